package ext4writer

import (
	"fmt"
	"io/fs"
	"os"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// bigDirEntries returns n empty files in one directory, with a few
// names using bytes >= 0x80 (where signed and unsigned hashes differ).
func bigDirEntries(n int) []entry {
	ents := []entry{{name: "d", mode: fs.ModeDir | 0o755}}
	for i := range n {
		name := fmt.Sprintf("d/file-%07d", i)
		if i%1000 == 0 {
			name = fmt.Sprintf("d/fichier-é-%d-\xff", i)
		}
		ents = append(ents, entry{name: name, mode: 0o644, mtime: time.Unix(int64(i), 0)})
	}
	return ents
}

func countLs(t *testing.T, img, dir string) int {
	out := debugfs(t, img, "ls -p "+quote(dir))
	n := 0
	for _, line := range strings.Split(out, "\n") {
		if m := lsRe.FindStringSubmatch(line); m != nil && m[5] != "." && m[5] != ".." && m[5] != "" {
			n++
		}
	}
	return n
}

func checkBig(t *testing.T, ents []entry, img string) {
	t.Helper()
	fsck(t, img)
	if os.Geteuid() == 0 {
		checkTree(t, ents, mountTree(t, img))
	}
}

func TestLargeDir(t *testing.T) {
	needTools(t)
	n := 100000
	if testing.Short() {
		n = 20000
	}
	ents := bigDirEntries(n)
	img := buildImage(t, ents)
	checkBig(t, ents, img)
	if got := countLs(t, img, "/d"); got != n {
		t.Errorf("debugfs lists %d entries, want %d", got, n)
	}
	if f := stats(t, img)["Filesystem features"]; strings.Contains(f, "large_dir") {
		t.Errorf("large_dir set without need: %s", f)
	}
	st := debugfs(t, img, "stat /d")
	if !regexp.MustCompile(`Flags: 0x[0-9a-f]*1[0-9a-f]{3}\b`).MatchString(st) {
		t.Errorf("/d is not htree indexed:\n%s", st[:min(len(st), 300)])
	}
}

func TestManySubdirs(t *testing.T) {
	needTools(t)
	if testing.Short() {
		t.Skip("short")
	}
	const n = 65001
	ents := []entry{{name: "d", mode: fs.ModeDir | 0o755}}
	for i := range n {
		ents = append(ents, entry{name: fmt.Sprintf("d/%d", i), mode: fs.ModeDir | 0o700})
	}
	img := buildImage(t, ents)
	fsck(t, img)
	st := debugfs(t, img, "stat /d")
	if !strings.Contains(st, "Links: 1 ") {
		t.Errorf("/d link count not 1:\n%s", st[:min(len(st), 300)])
	}
	if os.Geteuid() == 0 {
		checkTree(t, ents, mountTree(t, img))
	}
}

func TestSparseHuge(t *testing.T) {
	needTools(t)
	if testing.Short() {
		t.Skip("short")
	}
	const size = 20 << 30
	head, tail := []byte("start of a 20 GiB file"), []byte("the end")
	ents := []entry{{name: "huge", mode: 0o644, data: head, size: size, tail: tail}}
	start := time.Now()
	img := buildImage(t, ents, WithFreeSpace(0))
	t.Logf("wrote 20 GiB sparse file in %v", time.Since(start))
	fi, err := os.Stat(img)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() > 64<<20 {
		t.Errorf("image is %d bytes, want a small image", fi.Size())
	}
	fsck(t, img)
	out := debugfs(t, img, "stat /huge", "ex /huge")
	if !strings.Contains(out, fmt.Sprintf("Size: %d", int64(size))) {
		t.Errorf("size not %d:\n%s", int64(size), out)
	}
	// exactly two mapped blocks, logical 0 and the last one, holding the ends
	last := size/blockSize - 1
	re := regexp.MustCompile(`(?m)^\s*0/\s*0\s+\d+/\s*\d+\s+(\d+) -\s*(\d+)\s+(\d+) -\s*(\d+)\s+1\s*$`)
	ms := re.FindAllStringSubmatch(out, -1)
	if len(ms) != 2 || ms[0][1] != "0" || ms[1][1] != fmt.Sprint(last) {
		t.Fatalf("unexpected extents:\n%s", out)
	}
	raw, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	for i, want := range [][]byte{head, tail} {
		var pblk int64
		fmt.Sscan(ms[i][3], &pblk)
		off := pblk * blockSize
		if i == 1 {
			off += blockSize - int64(len(tail))
		}
		got := make([]byte, len(want))
		if _, err := raw.ReadAt(got, off); err != nil || string(got) != string(want) {
			t.Errorf("block %d: %q, %v; want %q", pblk, got, err, want)
		}
	}
	if os.Geteuid() == 0 {
		mountCheck(t, img, func(mnt string) { checkEnds(t, mnt+"/huge", head, tail, size) })
	}
}

func checkEnds(t *testing.T, p string, head, tail []byte, size int64) {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() != size {
		t.Errorf("%s: size %d, want %d", p, fi.Size(), size)
	}
	buf := make([]byte, blockSize)
	for _, c := range []struct {
		off  int64
		want []byte
	}{{0, head}, {size - int64(len(tail)), tail}, {size / 2, make([]byte, blockSize)}} {
		n, err := f.ReadAt(buf[:len(c.want)], c.off)
		if err != nil || string(buf[:n]) != string(c.want) {
			t.Errorf("%s at %d: %q, %v; want %q", p, c.off, buf[:n], err, c.want)
		}
	}
}

// TestDeepExtentTree builds a file with enough discontiguous extents to
// need a depth-2 extent tree. It maps blocks without writing their data
// (they read back as zeros), which only a test inside the package can do.
func TestDeepExtentTree(t *testing.T) {
	needTools(t)
	const n = 4*340*340/340*340 + 1000 // more than 4*340 leaves
	path := t.TempDir() + "/img"
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w, err := New(f)
	if err != nil {
		t.Fatal(err)
	}
	size := int64(2*n) * blockSize
	if err := w.Create("f", &File{Mode: 0o644, Size: size}); err != nil {
		t.Fatal(err)
	}
	for i := range uint64(n) {
		s, c, ok := w.alloc.alloc(1)
		if !ok || c != 1 {
			t.Fatal("alloc")
		}
		w.cur.addExtent(2*i+1, s, 1)
	}
	w.cur, w.remaining = nil, 0
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	fsck(t, path)
	st := debugfs(t, path, "stat /f")
	if !strings.Contains(st, "Level Entries") && !strings.Contains(st, "EXTENTS") {
		t.Logf("%s", st[:min(300, len(st))])
	}
	ex := debugfs(t, path, "ex /f")
	if !regexp.MustCompile(`(?m)^\s*0/\s*[2-9]\s`).MatchString(ex) {
		t.Errorf("no depth-2 extent tree:\n%s", ex[:min(600, len(ex))])
	}
}

// TestHugeFixedSize lays out a 2 TiB image (16384 groups, 256-block
// group descriptor tables and their backups) holding a small tree.
func TestHugeFixedSize(t *testing.T) {
	needTools(t)
	if testing.Short() {
		t.Skip("short")
	}
	ents := allTypes()
	img := buildImage(t, ents, WithSize(2<<40), WithMaxSize(2<<40))
	if got := imageSize(t, img); got != 2<<40 {
		t.Errorf("image size %d, want %d", got, int64(2<<40))
	}
	fsck(t, img)
	checkTree(t, ents, readTree(t, img))
	if os.Geteuid() == 0 {
		checkTree(t, ents, mountTree(t, img))
	}
	var st syscall.Stat_t
	if err := syscall.Stat(img, &st); err == nil && st.Blocks*512 > 64<<20 {
		t.Errorf("2 TiB image allocates %d bytes on disk, want a sparse file", st.Blocks*512)
	}
}
