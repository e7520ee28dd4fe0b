package bench

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/img2ext4/img2ext4"
	"github.com/img2ext4/img2ext4/ext4writer"
	"github.com/img2ext4/img2ext4/internal/copystat"
	"github.com/img2ext4/img2ext4/layerapply"
	"github.com/klauspost/compress/gzip"
)

// The generated layer: about 49 MiB of tar in 1,109 entries (46 KB an entry), gzip ratio
// 2.6:1, close to the Debian image of build-image.sh (63 KB an entry, 2.9:1). It depends
// only on the seeds; TestLayerShape -v prints its shape.
const (
	layerBytes = 48 << 20
	seed1      = 4
	seed2      = 2
)

var words = []string{
	"the", "of", "and", "to", "in", "is", "for", "that", "return", "func", "struct", "int", "char",
	"static", "const", "void", "if", "else", "while", "module", "import", "def", "self", "None",
	"license", "copyright", "gnu", "debian", "usr", "lib", "share", "x86_64", "linux", "kernel",
}

// fill writes n bytes of content: mostly text from a small vocabulary, with runs of random
// bytes standing in for machine code.
func fill(r *rand.Rand, buf *bytes.Buffer, n int) {
	for buf.Len() < n {
		if r.IntN(40) == 0 {
			for range 8 + r.IntN(56) {
				buf.WriteByte(byte(r.Uint32()))
			}
			continue
		}
		buf.WriteString(words[r.IntN(len(words))])
		if r.IntN(12) == 0 {
			buf.WriteByte('\n')
		} else {
			buf.WriteByte(' ')
		}
	}
	buf.Truncate(n)
}

// fileSize draws from a mix: most files small, a few large, as in a distribution tree.
func fileSize(r *rand.Rand) int {
	switch p := r.IntN(100); {
	case p < 10:
		return 0
	case p < 75:
		return r.IntN(8 << 10)
	case p < 97:
		return 8<<10 + r.IntN(120<<10)
	default:
		return 128<<10 + r.IntN(2<<20)
	}
}

type layerData struct {
	tar, gz []byte
	entries int
}

var (
	layerOnce sync.Once
	layer     layerData
)

// genLayer returns the generated layer, built once per process.
func genLayer(tb testing.TB) layerData {
	tb.Helper()
	layerOnce.Do(func() {
		r := rand.New(rand.NewPCG(seed1, seed2))
		mtime := time.Date(2025, 5, 20, 0, 0, 0, 0, time.UTC)
		var raw bytes.Buffer
		tw := tar.NewWriter(&raw)
		var body bytes.Buffer
		n := 0
		write := func(h *tar.Header, b []byte) {
			h.ModTime = mtime
			if err := tw.WriteHeader(h); err != nil {
				panic(err)
			}
			if _, err := tw.Write(b); err != nil {
				panic(err)
			}
			n++
		}
		for d := 0; raw.Len() < layerBytes; d++ {
			dir := fmt.Sprintf("usr/lib/pkg%03d/", d)
			if d == 0 {
				write(&tar.Header{Typeflag: tar.TypeDir, Name: "usr/", Mode: 0o755}, nil)
				write(&tar.Header{Typeflag: tar.TypeDir, Name: "usr/lib/", Mode: 0o755}, nil)
			}
			write(&tar.Header{Typeflag: tar.TypeDir, Name: dir, Mode: 0o755}, nil)
			for f := range 40 {
				name := fmt.Sprintf("%sfile%03d.so", dir, f)
				switch r.IntN(20) {
				case 0:
					write(&tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: "file000.so", Mode: 0o777}, nil)
				case 1:
					if f > 0 {
						write(&tar.Header{Typeflag: tar.TypeLink, Name: name, Linkname: dir + "file000.so", Mode: 0o644}, nil)
						continue
					}
					fallthrough
				default:
					body.Reset()
					fill(r, &body, fileSize(r))
					write(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(body.Len())}, body.Bytes())
				}
			}
		}
		if err := tw.Close(); err != nil {
			panic(err)
		}
		var gz bytes.Buffer
		zw := gzip.NewWriter(&gz)
		if _, err := zw.Write(raw.Bytes()); err != nil {
			panic(err)
		}
		if err := zw.Close(); err != nil {
			panic(err)
		}
		layer = layerData{tar: raw.Bytes(), gz: gz.Bytes(), entries: n}
	})
	return layer
}

var (
	dirLayerOnce sync.Once
	dirLayer     layerData
)

// genDirLayer returns a layer of one directory of 60,000 empty files, the third layer of
// the edge shape (bench/build-shapes.sh): what applying an entry costs without a body.
func genDirLayer(tb testing.TB) layerData {
	tb.Helper()
	dirLayerOnce.Do(func() {
		const n = 60000
		mtime := time.Date(2025, 5, 20, 0, 0, 0, 0, time.UTC)
		var raw bytes.Buffer
		tw := tar.NewWriter(&raw)
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: "many/", Mode: 0o755, ModTime: mtime}); err != nil {
			panic(err)
		}
		for i := range n {
			h := &tar.Header{Typeflag: tar.TypeReg, Name: fmt.Sprintf("many/file-%06d", i), Mode: 0o644, ModTime: mtime}
			if err := tw.WriteHeader(h); err != nil {
				panic(err)
			}
		}
		if err := tw.Close(); err != nil {
			panic(err)
		}
		var gz bytes.Buffer
		zw := gzip.NewWriter(&gz)
		if _, err := zw.Write(raw.Bytes()); err != nil {
			panic(err)
		}
		if err := zw.Close(); err != nil {
			panic(err)
		}
		dirLayer = layerData{tar: raw.Bytes(), gz: gz.Bytes(), entries: n + 1}
	})
	return dirLayer
}

// genImage returns a one-layer image over the generated layer.
func genImage(tb testing.TB) v1.Image {
	tb.Helper()
	return imageOf(tb, genLayer(tb))
}

// imageOf returns a one-layer image over l.
func imageOf(tb testing.TB, l layerData) v1.Image {
	tb.Helper()
	lay, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(l.gz)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		tb.Fatal(err)
	}
	img, err := mutate.AppendLayers(mutate.MediaType(empty.Image, types.OCIManifestSchema1), lay)
	if err != nil {
		tb.Fatal(err)
	}
	return img
}

// report sets the throughput unit (uncompressed tar bytes) and allocation reporting;
// call it before the loop.
func report(b *testing.B, l layerData) {
	b.SetBytes(int64(len(l.tar)))
	b.ReportAllocs()
}

// perEntry adds ns/entry; call it after the loop.
func perEntry(b *testing.B, l layerData) {
	if b.N == 0 {
		return
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(l.entries), "ns/entry")
}

// allocsPerEntry reports the heap allocations of every goroutine between start and the
// call, per entry of l, as allocs/entry; start is runtime.MemStats.Mallocs before the loop.
func allocsPerEntry(b *testing.B, l layerData, start uint64) {
	if b.N == 0 {
		return
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	b.ReportMetric(float64(ms.Mallocs-start)/float64(b.N)/float64(l.entries), "allocs/entry")
}

// copiesPerByte reports the bytes copystat counted per uncompressed byte of l, as
// copies/byte, in a build with the copystat tag; call it after the loop.
func copiesPerByte(b *testing.B, l layerData) {
	if !copystat.Enabled || b.N == 0 {
		return
	}
	b.ReportMetric(float64(copystat.Load())/float64(b.N)/float64(len(l.tar)), "copies/byte")
}

func mallocs() uint64 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.Mallocs
}

// BenchmarkGunzip is the floor: decompression of the layer alone. Throughput is in
// uncompressed bytes, as for every benchmark here.
func BenchmarkGunzip(b *testing.B) {
	l := genLayer(b)
	report(b, l)
	zr, err := gzip.NewReader(bytes.NewReader(l.gz))
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 256<<10)
	for b.Loop() {
		if err := zr.Reset(bytes.NewReader(l.gz)); err != nil {
			b.Fatal(err)
		}
		if _, err := io.CopyBuffer(io.Discard, zr, buf); err != nil {
			b.Fatal(err)
		}
	}
	perEntry(b, l)
}

// BenchmarkGunzipDiffID adds hashing the uncompressed stream with SHA-256, as checking a
// layer's DiffID needs: the floor for a converter that verifies what it applies.
func BenchmarkGunzipDiffID(b *testing.B) {
	l := genLayer(b)
	report(b, l)
	zr, err := gzip.NewReader(bytes.NewReader(l.gz))
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 256<<10)
	h := sha256.New()
	for b.Loop() {
		if err := zr.Reset(bytes.NewReader(l.gz)); err != nil {
			b.Fatal(err)
		}
		h.Reset()
		if _, err := io.CopyBuffer(h, zr, buf); err != nil {
			b.Fatal(err)
		}
	}
	perEntry(b, l)
}

// BenchmarkSHA256 is the DiffID hash alone (crypto/sha256, which uses the CPU's SHA
// extensions where it has them) over the uncompressed layer: the rate that bounds how fast
// any layer can be verified, since one layer's hash cannot be split over cores.
func BenchmarkSHA256(b *testing.B) {
	l := genLayer(b)
	report(b, l)
	h := sha256.New()
	for b.Loop() {
		h.Reset()
		for p := l.tar; len(p) > 0; {
			k := min(len(p), 1<<20)
			h.Write(p[:k])
			p = p[k:]
		}
	}
}

// BenchmarkGunzipTarRead adds reading the tar headers and draining bodies with archive/tar.
func BenchmarkGunzipTarRead(b *testing.B) {
	l := genLayer(b)
	report(b, l)
	zr, err := gzip.NewReader(bytes.NewReader(l.gz))
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 256<<10)
	start := mallocs()
	defer func() { allocsPerEntry(b, l, start) }()
	for b.Loop() {
		if err := zr.Reset(bytes.NewReader(l.gz)); err != nil {
			b.Fatal(err)
		}
		tr := tar.NewReader(zr)
		for {
			_, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
			if _, err := io.CopyBuffer(io.Discard, tr, buf); err != nil {
				b.Fatal(err)
			}
		}
	}
	perEntry(b, l)
}

// BenchmarkApplyTarSink is layerapply.Apply (gunzip, DiffID check, tar parsing, merge)
// into the flattened-tar sink writing to io.Discard, Close included.
func BenchmarkApplyTarSink(b *testing.B) {
	l := genLayer(b)
	img := genImage(b)
	tmp := b.TempDir()
	ctx := context.Background()
	report(b, l)
	for b.Loop() {
		s, err := layerapply.NewTar(io.Discard, tmp)
		if err != nil {
			b.Fatal(err)
		}
		if err := layerapply.Apply(ctx, s, img); err != nil {
			b.Fatal(err)
		}
		if err := s.Close(); err != nil {
			b.Fatal(err)
		}
	}
	perEntry(b, l)
}

// BenchmarkApplyExt4Sink is layerapply.Apply into the ext4 sink writing an image file in
// the test's temporary directory, the writer's Close included; allocs/entry counts every
// goroutine's allocations (decoders and hashers too), to compare with
// BenchmarkGunzipTarRead's, archive/tar's own. Built with the copystat tag
// (go test -tags copystat), it also reports copies/byte: the bytes img2ext4's code copied
// between the decompressor's output and pwrite (counted at each copy, spool files
// included), per uncompressed byte of the layer.
func BenchmarkApplyExt4Sink(b *testing.B) {
	benchApplyExt4(b, genLayer(b))
}

// BenchmarkApplyExt4SinkEntries is BenchmarkApplyExt4Sink on a layer of 60,000 empty files
// in one directory (genDirLayer): the cost of an entry alone, Close included.
func BenchmarkApplyExt4SinkEntries(b *testing.B) {
	benchApplyExt4(b, genDirLayer(b))
}

func benchApplyExt4(b *testing.B, l layerData) {
	img := imageOf(b, l)
	tmp := b.TempDir()
	ctx := context.Background()
	report(b, l)
	copystat.Reset()
	defer func() { copiesPerByte(b, l) }()
	start := mallocs()
	for b.Loop() {
		f, err := os.Create(filepath.Join(tmp, "img"))
		if err != nil {
			b.Fatal(err)
		}
		w, err := ext4writer.New(f)
		if err != nil {
			b.Fatal(err)
		}
		if err := layerapply.Apply(ctx, layerapply.NewExt4(w), img, layerapply.WithTempDir(tmp)); err != nil {
			b.Fatal(err)
		}
		if err := w.Close(); err != nil {
			b.Fatal(err)
		}
		f.Close()
	}
	allocsPerEntry(b, l, start)
	perEntry(b, l)
}

// BenchmarkApplyDirSink is layerapply.Apply into a directory on the disk of the test's
// temporary directory; removing the tree between iterations is not timed.
func BenchmarkApplyDirSink(b *testing.B) {
	l := genLayer(b)
	img := genImage(b)
	tmp := b.TempDir()
	ctx := context.Background()
	report(b, l)
	i := 0
	for b.Loop() {
		dir := filepath.Join(tmp, fmt.Sprint(i))
		i++
		s, err := layerapply.NewDir(dir)
		if err != nil {
			b.Fatal(err)
		}
		if err := layerapply.Apply(ctx, s, img); err != nil {
			b.Fatal(err)
		}
		if err := s.Close(); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if err := os.RemoveAll(dir); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	perEntry(b, l)
}

// BenchmarkConvertExt4 is the whole conversion of a local OCI layout holding the layer to
// an ext4 image file with the default options (img2ext4.Convert).
func BenchmarkConvertExt4(b *testing.B) {
	benchConvert(b, img2ext4.FormatExt4)
}

// BenchmarkConvertTar is the same to a flattened tar file.
func BenchmarkConvertTar(b *testing.B) {
	benchConvert(b, img2ext4.FormatTar)
}

func benchConvert(b *testing.B, f img2ext4.Format) {
	l := genLayer(b)
	img := genImage(b)
	tmp := b.TempDir()
	oci := filepath.Join(tmp, "oci")
	p, err := layout.Write(oci, empty.Index)
	if err != nil {
		b.Fatal(err)
	}
	if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{
		"org.opencontainers.image.ref.name": "bench",
	})); err != nil {
		b.Fatal(err)
	}
	out := filepath.Join(tmp, "out")
	ctx := context.Background()
	report(b, l)
	for b.Loop() {
		if _, err := img2ext4.Convert(ctx, "oci:"+oci+":bench", out,
			img2ext4.WithFormat(f), img2ext4.WithTempDir(tmp)); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if err := os.Remove(out); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	perEntry(b, l)
}

// TestLayerShape logs the shape of the generated layer (run with -v); it checks nothing
// about speed.
func TestLayerShape(t *testing.T) {
	l := genLayer(t)
	t.Logf("generated layer: %d entries, %d bytes of tar, %d bytes gzip (%.2f:1)",
		l.entries, len(l.tar), len(l.gz), float64(len(l.tar))/float64(len(l.gz)))
}
