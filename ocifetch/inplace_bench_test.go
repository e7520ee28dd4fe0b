package ocifetch

import (
	"bufio"
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
)

// writtenBytes returns the bytes this process has passed to write(2) so
// far (wchar in /proc/self/io), or -1 where that is not available.
func writtenBytes() int64 {
	b, err := os.ReadFile("/proc/self/io")
	if err != nil {
		return -1
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if v, ok := bytes.CutPrefix(sc.Bytes(), []byte("wchar: ")); ok {
			n, err := strconv.ParseInt(string(v), 10, 64)
			if err != nil {
				return -1
			}
			return n
		}
	}
	return -1
}

// BenchmarkLocalLayout measures resolving an image from an OCI layout,
// prefetching it and reading every layer blob to its end, the path a
// conversion from "oci:DIR" takes before decompression. wbytes/op is what
// the process wrote meanwhile (temp copies of blobs, if any).
func BenchmarkLocalLayout(b *testing.B) {
	img, total := benchImage(b, 8<<20, 4)
	dir := filepath.Join(b.TempDir(), "layout")
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		b.Fatal(err)
	}
	if err := p.AppendImage(img); err != nil {
		b.Fatal(err)
	}
	tmp := b.TempDir()
	buf := make([]byte, 256<<10)
	b.SetBytes(total)
	b.ReportAllocs()
	w0 := writtenBytes()
	b.ResetTimer()
	for range b.N {
		readAllLayers(b, "oci:"+dir, tmp, buf)
	}
	b.StopTimer()
	if w0 >= 0 {
		b.ReportMetric(float64(writtenBytes()-w0)/float64(b.N), "wbytes/op")
	}
}

// readAllLayers resolves ref, prefetches it and reads every layer blob.
func readAllLayers(tb testing.TB, ref, tmp string, buf []byte) {
	img, err := Image(ctxBG, ref, WithTempDir(tmp))
	if err != nil {
		tb.Fatal(err)
	}
	pf, err := Prefetch(ctxBG, img, WithTempDir(tmp))
	if err != nil {
		tb.Fatal(err)
	}
	defer pf.Close()
	readEach(tb, pf.Layers(), buf)
}

// readEach reads every layer's compressed blob to its end.
func readEach(tb testing.TB, layers []v1.Layer, buf []byte) {
	for i, l := range layers {
		rc, err := l.Compressed()
		if err != nil {
			tb.Fatalf("layer %d: %v", i, err)
		}
		_, err = io.CopyBuffer(io.Discard, rc, buf)
		rc.Close()
		if err != nil {
			tb.Fatalf("layer %d: %v", i, err)
		}
	}
}
