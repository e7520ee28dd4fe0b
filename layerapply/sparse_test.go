package layerapply_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/img2ext4/img2ext4/ext4writer"
	"github.com/img2ext4/img2ext4/internal/tartest"
	"github.com/img2ext4/img2ext4/layerapply"
	"golang.org/x/sys/unix"
)

// sparseFormats are the ways GNU tar stores a sparse file.
var sparseFormats = []struct {
	name string
	args []string
}{
	{"pax-0.0", []string{"--format=posix", "--sparse-version=0.0"}},
	{"pax-0.1", []string{"--format=posix", "--sparse-version=0.1"}},
	{"pax-1.0", []string{"--format=posix", "--sparse-version=1.0"}},
	{"gnu", []string{"--format=gnu"}},
}

// sparseSpec is a file made with truncate and a few writes.
type sparseSpec struct {
	name string
	size int64
	data map[int64][]byte
}

func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7+int(seed)) | 1
	}
	return b
}

// sparseSpecs cover data at the start, unaligned inside a block, in the middle, at the end,
// a file that is all hole, a file with zeros written as data, and one with enough runs that
// the old GNU format needs extension blocks (4 runs in the header, 21 in each extension).
func sparseSpecs() []sparseSpec {
	many := map[int64][]byte{}
	for i := range 30 {
		many[int64(i)*(256<<10)+int64(i)*4096] = pattern(4096+i*100, byte(i))
	}
	return []sparseSpec{
		{"mixed", 10<<20 + 123, map[int64][]byte{0: []byte("start"), 5000: []byte("unaligned"), 3 << 20: pattern(64<<10, 1)}},
		{"tail", 6 << 20, map[int64][]byte{1 << 20: pattern(8192, 2), 6<<20 - 4: []byte("tail")}},
		{"hole", 1 << 20, nil},
		{"zeros", 2 << 20, map[int64][]byte{4096: make([]byte, 64<<10), 1 << 20: pattern(100, 3)}},
		{"many", 30 * (260 << 10), many},
	}
}

// makeSparse writes the specs into dir.
func makeSparse(t *testing.T, dir string, specs []sparseSpec) {
	t.Helper()
	for _, s := range specs {
		f, err := os.Create(filepath.Join(dir, s.name))
		if err != nil {
			t.Fatal(err)
		}
		if err := f.Truncate(s.size); err != nil {
			t.Fatal(err)
		}
		for off, b := range s.data {
			if _, err := f.WriteAt(b, off); err != nil {
				t.Fatal(err)
			}
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// gnuSparseTar archives the files of src with GNU tar --sparse and the format args, and
// extracts the archive with GNU tar into a new directory: what the sinks must agree with.
func gnuSparseTar(t *testing.T, src string, names []string, args ...string) (archive []byte, extracted string) {
	t.Helper()
	if _, err := exec.LookPath("tar"); err != nil {
		t.Skip("GNU tar is not installed (Debian package tar)")
	}
	out := filepath.Join(t.TempDir(), "layer.tar")
	cargs := append(append([]string{"--sparse"}, args...), "-C", src, "-cf", out)
	if err := runTar(t, append(cargs, names...)...); err != nil {
		t.Fatalf("GNU tar create: %v", err)
	}
	extracted = t.TempDir()
	if err := runTar(t, "-C", extracted, "-xf", out); err != nil {
		t.Fatalf("GNU tar extract: %v", err)
	}
	archive, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return archive, extracted
}

// allocated returns the bytes a file takes on disk.
func allocated(t *testing.T, name string) int64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(name, &st); err != nil {
		t.Fatal(err)
	}
	return st.Blocks * 512
}

// dataBlocks counts the 4 KiB blocks of b holding a byte that is not zero: the blocks an
// ext4 image needs for it.
func dataBlocks(b []byte) int {
	n := 0
	for i := 0; i < len(b); i += 4096 {
		if !bytes.Equal(b[i:min(i+4096, len(b))], make([]byte, min(4096, len(b)-i))) {
			n++
		}
	}
	return n
}

func needTool(t *testing.T, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("%s is not installed (Debian package %s)", name, pkg)
	}
	return p
}

// buildExt4 applies the layers into a new ext4 image and returns its path.
func buildExt4(t *testing.T, tars [][]byte) string {
	t.Helper()
	img := filepath.Join(t.TempDir(), "img")
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w, err := ext4writer.New(f)
	if err != nil {
		t.Fatal(err)
	}
	if err := layerapply.Apply(context.Background(), layerapply.NewExt4(w), tartest.Image(tars...)); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return img
}

// e2fsck checks an image with e2fsck -fn.
func e2fsck(t *testing.T, img string) {
	t.Helper()
	if out, err := exec.Command(needTool(t, "e2fsck", "e2fsprogs"), "-fn", img).CombinedOutput(); err != nil {
		t.Fatalf("e2fsck -fn: %v\n%s", err, out)
	}
}

// debugfs runs one debugfs request on img.
func debugfs(t *testing.T, img, req string) string {
	t.Helper()
	out, err := exec.Command(needTool(t, "debugfs", "e2fsprogs"), "-R", req, img).CombinedOutput()
	if err != nil {
		t.Fatalf("debugfs %s: %v\n%s", req, err, out)
	}
	return string(out)
}

var sizeLine = regexp.MustCompile(`Size: (\d+)`)

var extentRange = regexp.MustCompile(`\((\d+)(?:-(\d+))?\):`)

// debugfsFile returns the size of name in img and the number of its data blocks (extent
// tree blocks not counted), as debugfs reads them.
func debugfsFile(t *testing.T, img, name string) (size int64, blocks int64) {
	t.Helper()
	st := debugfs(t, img, "stat /"+name)
	m := sizeLine.FindStringSubmatch(st)
	if m == nil {
		t.Fatalf("debugfs stat /%s: no size", name)
	}
	size, _ = strconv.ParseInt(m[1], 10, 64)
	_, ext, _ := strings.Cut(st, "EXTENTS:")
	for _, r := range extentRange.FindAllStringSubmatch(ext, -1) {
		lo, _ := strconv.ParseInt(r[1], 10, 64)
		hi := lo
		if r[2] != "" {
			hi, _ = strconv.ParseInt(r[2], 10, 64)
		}
		blocks += hi - lo + 1
	}
	return size, blocks
}

// TestSparseGNUTar converts real sparse archives of every GNU tar format through the three
// sinks and compares each file with GNU tar's own extraction: its bytes and size, and that
// it keeps its holes (no more disk than GNU tar's extraction in a directory, one block per
// 4 KiB block holding data in ext4, a sparse entry again in a tar).
func TestSparseGNUTar(t *testing.T) {
	src := t.TempDir()
	specs := sparseSpecs()
	makeSparse(t, src, specs)
	var names []string
	for _, s := range specs {
		names = append(names, s.name)
	}
	for _, format := range sparseFormats {
		t.Run(format.name, func(t *testing.T) {
			layer, want := gnuSparseTar(t, src, names, format.args...)
			wantBytes := map[string][]byte{}
			for _, n := range names {
				b, err := os.ReadFile(filepath.Join(want, n))
				if err != nil {
					t.Fatal(err)
				}
				wantBytes[n] = b
			}
			t.Run("dir", func(t *testing.T) {
				root := filepath.Join(t.TempDir(), "root")
				d, err := layerapply.NewDir(root)
				if err != nil {
					t.Fatal(err)
				}
				if err := layerapply.Apply(context.Background(), d, tartest.Image(layer)); err != nil {
					t.Fatal(err)
				}
				if err := d.Close(); err != nil {
					t.Fatal(err)
				}
				for _, n := range names {
					got, err := os.ReadFile(filepath.Join(root, n))
					if err != nil {
						t.Fatal(err)
					}
					if !bytes.Equal(got, wantBytes[n]) {
						t.Errorf("%s: %d bytes differ from GNU tar's extraction (%d bytes)", n, len(got), len(wantBytes[n]))
					}
					if g, w := allocated(t, filepath.Join(root, n)), allocated(t, filepath.Join(want, n)); g > w {
						t.Errorf("%s takes %d bytes on disk, GNU tar's extraction %d", n, g, w)
					}
				}
			})
			t.Run("ext4", func(t *testing.T) {
				img := buildExt4(t, [][]byte{layer})
				e2fsck(t, img)
				out := t.TempDir()
				for _, n := range names {
					debugfs(t, img, fmt.Sprintf("dump /%s %s", n, filepath.Join(out, n)))
					got, err := os.ReadFile(filepath.Join(out, n))
					if err != nil {
						t.Fatal(err)
					}
					if !bytes.Equal(got, wantBytes[n]) {
						t.Errorf("%s: debugfs dump gives %d bytes that differ from GNU tar's extraction (%d bytes)", n, len(got), len(wantBytes[n]))
					}
					size, blocks := debugfsFile(t, img, n)
					if size != int64(len(wantBytes[n])) {
						t.Errorf("%s: size %d in the image, want %d", n, size, len(wantBytes[n]))
					}
					if w := dataBlocks(wantBytes[n]); blocks != int64(w) {
						t.Errorf("%s: %d data blocks in the image, want %d (one per 4 KiB block that is not all zero)", n, blocks, w)
					}
				}
			})
			t.Run("tar", func(t *testing.T) {
				var buf bytes.Buffer
				s, err := layerapply.NewTar(&buf, t.TempDir())
				if err != nil {
					t.Fatal(err)
				}
				if err := layerapply.Apply(context.Background(), s, tartest.Image(layer)); err != nil {
					t.Fatal(err)
				}
				if err := s.Close(); err != nil {
					t.Fatal(err)
				}
				var logical int64
				for _, n := range names {
					logical += int64(len(wantBytes[n]))
				}
				if int64(buf.Len()) > logical/4 {
					t.Errorf("flattened tar is %d bytes for %d bytes of mostly-hole files: the holes were stored", buf.Len(), logical)
				}
				archive := filepath.Join(t.TempDir(), "out.tar")
				if err := os.WriteFile(archive, buf.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
				out := t.TempDir()
				if err := runTar(t, "-C", out, "-xf", archive); err != nil {
					t.Fatalf("GNU tar cannot extract the flattened tar: %v", err)
				}
				for _, n := range names {
					got, err := os.ReadFile(filepath.Join(out, n))
					if err != nil {
						t.Fatal(err)
					}
					if !bytes.Equal(got, wantBytes[n]) {
						t.Errorf("%s: GNU tar extracts %d bytes from the flattened tar that differ from the original (%d bytes)", n, len(got), len(wantBytes[n]))
					}
				}
			})
		})
	}
}

// countingFile counts the bytes written through it.
type countingFile struct {
	*os.File
	written int64
}

func (f *countingFile) WriteAt(p []byte, off int64) (int, error) {
	f.written += int64(len(p))
	return f.File.WriteAt(p, off)
}

const tib = int64(1) << 40

// tibSpec is a 1 TiB file with 4 KiB of data in its middle and 4 bytes at its end.
var tibSpec = sparseSpec{"big", tib, map[int64][]byte{tib / 2: pattern(4096, 9), tib - 4: []byte("tail")}}

// tibLayer makes a 1 TiB sparse file and archives it with GNU tar in the format args.
func tibLayer(tb testing.TB, args ...string) []byte {
	tb.Helper()
	if _, err := exec.LookPath("tar"); err != nil {
		tb.Skip("GNU tar is not installed (Debian package tar)")
	}
	src := tb.TempDir()
	f, err := os.Create(filepath.Join(src, tibSpec.name))
	if err != nil {
		tb.Fatal(err)
	}
	if err := f.Truncate(tib); err != nil {
		f.Close()
		tb.Skipf("the temporary directory cannot hold a 1 TiB sparse file: %v", err)
	}
	for off, b := range tibSpec.data {
		if _, err := f.WriteAt(b, off); err != nil {
			tb.Fatal(err)
		}
	}
	f.Close()
	out := filepath.Join(tb.TempDir(), "layer.tar")
	cmd := exec.Command("tar", append(append([]string{"--sparse"}, args...), "-C", src, "-cf", out, tibSpec.name)...)
	if b, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("GNU tar: %v\n%s", err, b)
	}
	layer, err := os.ReadFile(out)
	if err != nil {
		tb.Fatal(err)
	}
	return layer
}

// readLimit is what a 1 TiB sparse entry may make a sink read: its data, not its holes.
const readLimit = 16 << 20

// countingSink counts the body bytes its sink reads, keeping the body's io.Seeker, and
// fails a read past readLimit, so that a sink reading holes as zeros fails at once
// instead of reading a TiB.
type countingSink struct {
	layerapply.Sink
	read int64
}

type countingBody struct {
	r io.Reader
	s *countingSink
}

func (b *countingBody) Read(p []byte) (int, error) {
	if b.s.read > readLimit {
		// no bytes with the error: io.ReadFull drops an error that comes with a full buffer
		return 0, fmt.Errorf("read %d body bytes: holes are read as zeros", b.s.read)
	}
	n, err := b.r.Read(p)
	b.s.read += int64(n)
	return n, err
}

type countingSeekBody struct {
	countingBody
}

func (b *countingSeekBody) Seek(off int64, whence int) (int64, error) {
	return b.r.(io.Seeker).Seek(off, whence)
}

func (s *countingSink) Entry(e *layerapply.Entry, body io.Reader) error {
	switch body.(type) {
	case nil:
	case io.Seeker:
		body = &countingSeekBody{countingBody{body, s}}
	default:
		body = &countingBody{body, s}
	}
	return s.Sink.Entry(e, body)
}

// applyExt4Counting applies the layer into an ext4 image and closes it, counting the
// bytes written: file data and all the metadata.
func applyExt4Counting(tb testing.TB, layer []byte, img string) int64 {
	tb.Helper()
	f, err := os.Create(img)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	cf := &countingFile{File: f}
	w, err := ext4writer.New(cf)
	if err != nil {
		tb.Fatal(err)
	}
	cs := &countingSink{Sink: layerapply.NewExt4(w)}
	if err := layerapply.Apply(context.Background(), cs, tartest.Image(layer)); err != nil {
		tb.Fatal(err)
	}
	if err := w.Close(); err != nil {
		tb.Fatal(err)
	}
	return cf.written
}

// TestSparseTiB converts a 1 TiB sparse entry (PAX 1.0 and old GNU, made by GNU tar)
// through the three sinks, checking the work is the data's, not the size's: under 1 MiB
// written for the body, a handful of blocks allocated, and the right size and bytes read
// back (debugfs for ext4, the file for the directory, GNU tar's extraction for the tar).
func TestSparseTiB(t *testing.T) {
	for _, format := range []struct {
		name string
		args []string
	}{{"pax-1.0", []string{"--format=posix", "--sparse-version=1.0"}}, {"gnu", []string{"--format=gnu"}}} {
		t.Run(format.name, func(t *testing.T) {
			layer := tibLayer(t, format.args...)
			t.Run("ext4", func(t *testing.T) {
				img := filepath.Join(t.TempDir(), "img")
				if written := applyExt4Counting(t, layer, img); written > 1<<20 {
					t.Errorf("the image of a 1 TiB sparse file took %d bytes of writes, want under 1 MiB", written)
				}
				e2fsck(t, img)
				size, blocks := debugfsFile(t, img, tibSpec.name)
				if size != tib || blocks != 2 {
					t.Errorf("debugfs: size %d with %d data blocks, want %d with 2", size, blocks, tib)
				}
				checkTiBExt4(t, img)
			})
			t.Run("dir", func(t *testing.T) {
				root := filepath.Join(t.TempDir(), "root")
				d, err := layerapply.NewDir(root)
				if err != nil {
					t.Fatal(err)
				}
				if err := layerapply.Apply(context.Background(), &countingSink{Sink: d}, tartest.Image(layer)); err != nil {
					t.Fatal(err)
				}
				if err := d.Close(); err != nil {
					t.Fatal(err)
				}
				checkTiBFile(t, filepath.Join(root, tibSpec.name))
			})
			t.Run("tar", func(t *testing.T) {
				var buf bytes.Buffer
				s, err := layerapply.NewTar(&buf, t.TempDir())
				if err != nil {
					t.Fatal(err)
				}
				if err := layerapply.Apply(context.Background(), &countingSink{Sink: s}, tartest.Image(layer)); err != nil {
					t.Fatal(err)
				}
				if err := s.Close(); err != nil {
					t.Fatal(err)
				}
				if buf.Len() > 1<<20 {
					t.Errorf("the flattened tar is %d bytes, want under 1 MiB", buf.Len())
				}
				archive := filepath.Join(t.TempDir(), "out.tar")
				if err := os.WriteFile(archive, buf.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
				out := t.TempDir()
				if err := runTar(t, "-C", out, "-xf", archive); err != nil {
					t.Fatalf("GNU tar cannot extract the flattened tar: %v", err)
				}
				checkTiBFile(t, filepath.Join(out, tibSpec.name))
			})
		})
	}
}

// checkTiBFile checks a file holds tibSpec: its size, its data, and no more than a few
// blocks on disk.
func checkTiBFile(t *testing.T, name string) {
	t.Helper()
	f, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() != tib {
		t.Errorf("%s: size %d, want %d", name, fi.Size(), tib)
	}
	for off, want := range tibSpec.data {
		got := make([]byte, len(want)+8)
		n, _ := f.ReadAt(got, off-4)
		if want4 := append(append(make([]byte, 4), want...), make([]byte, 4)...); !bytes.Equal(got[:n], want4[:n]) || n < len(want)+4 {
			t.Errorf("%s: bytes around %d differ", name, off)
		}
	}
	if a := allocated(t, name); a > 1<<20 {
		t.Errorf("%s takes %d bytes on disk, want under 1 MiB", name, a)
	}
}

// checkTiBExt4 reads tibSpec's data back from the image through the blocks debugfs maps
// its offsets to.
func checkTiBExt4(t *testing.T, img string) {
	t.Helper()
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for off, want := range tibSpec.data {
		lblk := off / 4096
		out := strings.Fields(debugfs(t, img, fmt.Sprintf("bmap /%s %d", tibSpec.name, lblk)))
		pblk, err := strconv.ParseInt(out[len(out)-1], 10, 64)
		if err != nil || pblk == 0 {
			t.Fatalf("debugfs bmap of block %d: %q", lblk, out)
		}
		got := make([]byte, len(want))
		if _, err := f.ReadAt(got, pblk*4096+off%4096); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("block %d (image block %d) does not hold the data written at %d", lblk, pblk, off)
		}
	}
}

// BenchmarkSparseTiB converts a PAX 1.0 sparse entry of 1 TiB (8 KiB of data) into an ext4
// image, metadata included; it reports the bytes the body wrote.
func BenchmarkSparseTiB(b *testing.B) {
	layer := tibLayer(b, "--format=posix", "--sparse-version=1.0")
	img := filepath.Join(b.TempDir(), "img")
	b.ReportAllocs()
	var written int64
	for b.Loop() {
		written = applyExt4Counting(b, layer, img)
	}
	b.ReportMetric(float64(written), "bytes-written")
}
