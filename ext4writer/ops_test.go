package ext4writer

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func randData(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func imageSize(t *testing.T, p string) int64 {
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

func TestRemoveReuse(t *testing.T) {
	needTools(t)
	a := randData(1, 4<<20)
	b := randData(2, 4<<20)
	withRemove := []entry{
		{name: "big", mode: 0o644, data: a},
		{name: "big", remove: true},
		{name: "other", mode: 0o644, data: b},
	}
	only := []entry{{name: "other", mode: 0o644, data: b}}
	img1 := buildImage(t, withRemove)
	img2 := buildImage(t, only)
	fsck(t, img1)
	checkTree(t, withRemove, readTree(t, img1))
	if s1, s2 := imageSize(t, img1), imageSize(t, img2); s1 != s2 {
		t.Errorf("image with a removed file is %d bytes, without %d", s1, s2)
	}
	if os.Geteuid() == 0 {
		checkTree(t, withRemove, mountTree(t, img1))
	}
}

func TestReplaceAndFragment(t *testing.T) {
	needTools(t)
	ents := []entry{
		{name: "f1", mode: 0o644, data: randData(3, 1<<20)},
		{name: "f2", mode: 0o644, data: randData(4, 1<<20)},
		{name: "f3", mode: 0o644, data: randData(5, 1<<20)},
		{name: "f1", remove: true},
		{name: "f4", mode: 0o644, data: randData(6, 3<<20)}, // fills f1's hole, then continues
		{name: "a", mode: fs.ModeDir | 0o755},
		{name: "a/b", mode: fs.ModeDir | 0o755},
		{name: "a/b/x", mode: 0o644, data: []byte("x")},
		{name: "keep", hardlink: "a/b/x"},
		{name: "a", mode: fs.ModeDir | 0o700, uid: 9, mtime: time.Unix(5, 0)}, // metadata only
		{name: "a/b", remove: true},
		{name: "f2", mode: fs.ModeDir | 0o755}, // file -> dir
		{name: "f2/inner", mode: 0o600, data: []byte("inner")},
		{name: "f3", mode: fs.ModeSymlink | 0o777, link: "f2/inner"}, // file -> symlink
		{name: "a", mode: 0o644, data: []byte("dir became a file")},  // dir -> file
		{name: "lnk", hardlink: "keep"},
		{name: "keep", mode: 0o644, data: []byte("new keep")}, // replacing one name keeps the other
		{name: "sub", mode: fs.ModeDir | 0o755},
		{name: "sub/z", mode: 0o644, data: bytes.Repeat([]byte{1}, 10000)},
		{name: "sub", remove: true},
		{name: "lost+found/junk", mode: 0o644, data: []byte("junk")},
		{name: "lost+found", remove: true}, // empties it, keeps the directory
	}
	for _, tc := range []struct {
		name string
		opts []Option
	}{{"default", nil}, {"legacy", []Option{WithLegacy()}}} {
		t.Run(tc.name, func(t *testing.T) {
			img := buildImage(t, ents, tc.opts...)
			fsck(t, img)
			fsckFix(t, img)
			m := model{}
			for _, e := range ents {
				m.apply(e)
			}
			delete(m, "lost+found/junk")
			checkModel(t, m, readTree(t, img))
			if os.Geteuid() == 0 {
				checkModel(t, m, mountTree(t, img))
			}
		})
	}
}

type nopWriterAt struct{}

func (nopWriterAt) WriteAt(p []byte, off int64) (int, error) { return len(p), nil }

func TestErrors(t *testing.T) {
	newW := func(t *testing.T, opts ...Option) *Writer {
		w, err := New(nopWriterAt{}, opts...)
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Create("dir", &File{Mode: fs.ModeDir | 0o755}); err != nil {
			t.Fatal(err)
		}
		if err := w.Create("file", &File{Mode: 0o644}); err != nil {
			t.Fatal(err)
		}
		return w
	}
	for _, tc := range []struct {
		name string
		do   func(w *Writer) error
		want error
	}{
		{"dotdot", func(w *Writer) error { return w.Create("../x", &File{}) }, ErrInvalidName},
		{"absolute", func(w *Writer) error { return w.Create("/x", &File{}) }, ErrInvalidName},
		{"empty", func(w *Writer) error { return w.Create("", &File{}) }, ErrInvalidName},
		{"double slash", func(w *Writer) error { return w.Create("dir//x", &File{}) }, ErrInvalidName},
		{"trailing slash", func(w *Writer) error { return w.Create("dir/", &File{}) }, ErrInvalidName},
		{"nul", func(w *Writer) error { return w.Create("a\x00b", &File{}) }, ErrInvalidName},
		{"long", func(w *Writer) error { return w.Create(strings.Repeat("n", 256), &File{}) }, ErrInvalidName},
		{"missing parent", func(w *Writer) error { return w.Create("nope/x", &File{}) }, ErrNotExist},
		{"parent not dir", func(w *Writer) error { return w.Create("file/x", &File{}) }, ErrNotDir},
		{"nil file", func(w *Writer) error { return w.Create("x", nil) }, ErrInvalidFile},
		{"root as file", func(w *Writer) error { return w.Create(".", &File{Mode: 0o644}) }, ErrIsDir},
		{"irregular", func(w *Writer) error { return w.Create("x", &File{Mode: fs.ModeIrregular}) }, ErrInvalidFile},
		{"negative size", func(w *Writer) error { return w.Create("x", &File{Size: -1}) }, ErrInvalidFile},
		{"empty symlink", func(w *Writer) error { return w.Create("x", &File{Mode: fs.ModeSymlink}) }, ErrInvalidFile},
		{"long symlink", func(w *Writer) error {
			return w.Create("x", &File{Mode: fs.ModeSymlink, Linkname: strings.Repeat("a", 4096)})
		}, ErrInvalidFile},
		{"bad xattr ns", func(w *Writer) error {
			return w.Create("x", &File{Xattrs: map[string][]byte{"foo.bar": nil}})
		}, ErrXattr},
		{"bad acl", func(w *Writer) error {
			return w.Create("x", &File{Xattrs: map[string][]byte{"system.posix_acl_access": {1, 2, 3}}})
		}, ErrXattr},
		{"xattr too big", func(w *Writer) error {
			return w.Create("x", &File{Xattrs: map[string][]byte{"user.big": make([]byte, 5000)}})
		}, ErrXattr},
		{"link dir", func(w *Writer) error { return w.Link("dir", "x") }, ErrIsDir},
		{"link missing", func(w *Writer) error { return w.Link("nope", "x") }, ErrNotExist},
		{"remove missing", func(w *Writer) error { return w.Remove("nope") }, ErrNotExist},
		{"write without file", func(w *Writer) error { _, err := w.Write([]byte("x")); return err }, ErrWriteTooLong},
		{"write too long", func(w *Writer) error {
			if err := w.Create("x", &File{Size: 2}); err != nil {
				return err
			}
			_, err := w.Write([]byte("abc"))
			return err
		}, ErrWriteTooLong},
		{"short body", func(w *Writer) error {
			if err := w.Create("x", &File{Size: 2}); err != nil {
				return err
			}
			if _, err := w.ReadFrom(strings.NewReader("a")); err != nil {
				return err
			}
			return w.Create("y", &File{})
		}, ErrShortWrite},
		{"short body close", func(w *Writer) error {
			if err := w.Create("x", &File{Size: 2}); err != nil {
				return err
			}
			return w.Close()
		}, ErrShortWrite},
		{"closed", func(w *Writer) error {
			if err := w.Close(); err != nil {
				return err
			}
			return w.Create("x", &File{})
		}, ErrClosed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newW(t)
			err := tc.do(w)
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if !strings.HasPrefix(errors.Unwrap(err).Error(), "ext4writer: ") && !strings.Contains(err.Error(), "ext4writer: ") {
				t.Errorf("error %q lacks the package prefix", err)
			}
		})
	}
}

func TestSizeLimit(t *testing.T) {
	needTools(t)
	path := filepath.Join(t.TempDir(), "img")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	const size = 8 << 20
	w, err := New(f, WithSize(size))
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Create("big", &File{Mode: 0o644, Size: 16 << 20}); err != nil {
		t.Fatal(err)
	}
	// the writer takes the whole body without writing past the limit,
	// so that Close can tell the size that would fit
	if _, err := w.ReadFrom(bytes.NewReader(randData(7, 16<<20))); err != nil {
		t.Fatal(err)
	}
	if err := w.Create("after", &File{Mode: 0o644, Size: 5}); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("after")); err != nil {
		t.Fatal(err)
	}
	err = w.Close()
	var se *SizeError
	if !errors.As(err, &se) || !errors.Is(err, ErrNoSpace) || se.Limit != size || se.Need < 16<<20 || se.Need > 24<<20 {
		t.Fatalf("got %v, want a *SizeError with limit %d and the size that fits", err, size)
	}
	if !strings.Contains(err.Error(), FormatSize(se.Need)) {
		t.Errorf("message %q does not name %s", err, FormatSize(se.Need))
	}
	if fi, _ := f.Stat(); fi.Size() > size {
		t.Errorf("wrote %d bytes past the %d byte limit", fi.Size(), size)
	}
	if err2 := w.Close(); err2 != err {
		t.Errorf("error not sticky: %v", err2)
	}
	// the size it named fits
	img := buildImage(t, []entry{{name: "big", mode: 0o644, data: randData(7, 16<<20)}, {name: "after", mode: 0o644, data: []byte("after")}},
		WithSize(se.Need))
	fsck(t, img)
	// metadata that does not fit is reported by Close
	w2, err := New(nopWriterAt{}, WithSize(1<<20), WithoutJournal())
	if err != nil {
		t.Fatal(err)
	}
	for i := range 300 {
		if err := w2.Create(strings.Repeat("d", 200)+string(rune('A'+i%26))+strings.Repeat("x", i/26), &File{Mode: fs.ModeDir}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w2.Close(); !errors.Is(err, ErrNoSpace) {
		t.Errorf("Close: got %v, want ErrNoSpace", err)
	}
}

func TestMinSizeAndFreeSpace(t *testing.T) {
	needTools(t)
	path := filepath.Join(t.TempDir(), "img")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w, err := New(f, WithFreeSpace(100<<20))
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Create("a", &File{Mode: 0o644, Size: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(w, bytes.NewReader(randData(8, 1<<20))); err != nil {
		t.Fatal(err)
	}
	min1, err := w.MinSize()
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if got := imageSize(t, path); got != min1 {
		t.Errorf("image is %d bytes, MinSize said %d", got, min1)
	}
	if s, _ := w.MinSize(); s != min1 {
		t.Errorf("MinSize after Close = %d, want %d", s, min1)
	}
	fsck(t, path)
	out := debugfs(t, path, "stats")
	var freeBlocks int64
	for _, line := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(line, "Free blocks:"); ok {
			freeBlocks, _ = parseInt(strings.TrimSpace(v))
		}
	}
	if freeBlocks*blockSize < 100<<20 {
		t.Errorf("free space %d bytes, want >= %d", freeBlocks*blockSize, 100<<20)
	}
}

func parseInt(s string) (int64, error) {
	var v int64
	for _, c := range s {
		if c < '0' || c > '9' {
			break
		}
		v = v*10 + int64(c-'0')
	}
	return v, nil
}

func TestReadDirAndSetSize(t *testing.T) {
	needTools(t)
	path := filepath.Join(t.TempDir(), "img")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w, err := New(f)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range allTypes() {
		if err := addEntry(w, e); err != nil {
			t.Fatal(err)
		}
	}
	names, err := w.ReadDir("dev")
	if err != nil || strings.Join(names, ",") != "big,fifo,null,null2,sda,sock" {
		t.Errorf("ReadDir(dev) = %v, %v", names, err)
	}
	if names, err := w.ReadDir("."); err != nil || strings.Join(names, ",") != "acl,bin,dev,lost+found,tmp,x" {
		t.Errorf("ReadDir(.) = %v, %v", names, err)
	}
	if _, err := w.ReadDir("x"); !errors.Is(err, ErrNotDir) {
		t.Errorf("ReadDir(file) = %v", err)
	}
	if _, err := w.ReadDir("nope"); !errors.Is(err, ErrNotExist) {
		t.Errorf("ReadDir(missing) = %v", err)
	}
	min, err := w.MinSize()
	if err != nil {
		t.Fatal(err)
	}
	if err := w.SetSize(min + 100<<20); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if got := imageSize(t, path); got != min+100<<20 {
		t.Errorf("size %d, want %d", got, min+100<<20)
	}
	fsck(t, path)
	checkTree(t, allTypes(), readTree(t, path))

	// SetSize below what the content needs fails at Close
	w2, err := New(nopWriterAt{})
	if err != nil {
		t.Fatal(err)
	}
	if err := w2.Create("big", &File{Mode: 0o644, Size: 8 << 20}); err != nil {
		t.Fatal(err)
	}
	if _, err := w2.ReadFrom(bytes.NewReader(randData(11, 8<<20))); err != nil {
		t.Fatal(err)
	}
	if err := w2.SetSize(1 << 20); err != nil {
		t.Fatal(err)
	}
	if err := w2.Close(); !errors.Is(err, ErrNoSpace) {
		t.Errorf("Close after a too small SetSize: %v", err)
	}
}

// failWriterAt fails every write past limit bytes.
type failWriterAt struct{ limit int64 }

var errDisk = errors.New("disk on fire")

func (f failWriterAt) WriteAt(p []byte, off int64) (int, error) {
	if off+int64(len(p)) > f.limit {
		return 0, errDisk
	}
	return len(p), nil
}

func TestStickyIOError(t *testing.T) {
	w, err := New(failWriterAt{limit: 4 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Create("big", &File{Mode: 0o644, Size: 16 << 20}); err != nil {
		t.Fatal(err)
	}
	_, err = w.ReadFrom(bytes.NewReader(randData(12, 16<<20)))
	if !errors.Is(err, errDisk) || !strings.Contains(err.Error(), "big") {
		t.Fatalf("ReadFrom: %v, want the disk error naming the file", err)
	}
	if err2 := w.Create("x", &File{}); !errors.Is(err2, errDisk) {
		t.Errorf("Create after I/O error: %v", err2)
	}
	if err2 := w.Close(); !errors.Is(err2, errDisk) {
		t.Errorf("Close after I/O error: %v", err2)
	}
	// an error while writing metadata at Close is reported too
	w2, err := New(failWriterAt{limit: 0})
	if err != nil {
		t.Fatal(err)
	}
	if err := w2.Close(); !errors.Is(err, errDisk) {
		t.Errorf("Close: %v, want the disk error", err)
	}
	if err := w2.Close(); !errors.Is(err, errDisk) {
		t.Errorf("second Close: %v, want the same error", err)
	}
}
