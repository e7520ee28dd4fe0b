package img2ext4_test

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/img2ext4/img2ext4"
	"github.com/img2ext4/img2ext4/ext4writer"
	"github.com/img2ext4/img2ext4/internal/tartest"
	"github.com/img2ext4/img2ext4/internal/treesnap"
)

// richLayers exercises every merge rule and every kind of metadata an image can carry.
func richLayers() [][]byte {
	at := func(y int) tartest.Opt { return tartest.Mtime(time.Date(y, 3, 4, 5, 6, 7, 123456789, time.UTC)) }
	big := make([]byte, 3<<20+123)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range big {
		big[i] = byte(r.UintN(256))
	}
	sparse := make([]byte, 9<<20)
	copy(sparse, "head")
	copy(sparse[len(sparse)-4:], "tail")
	capv2 := make([]byte, 20)
	binary.LittleEndian.PutUint32(capv2, 0x02000001)
	binary.LittleEndian.PutUint32(capv2[4:], 1<<10)
	return [][]byte{
		tartest.Tar(
			tartest.Dir("etc", at(2020)), tartest.Dir("usr", at(2020)), tartest.Dir("usr/bin", at(2020)),
			tartest.Symlink("bin", "usr/bin", at(2020)),
			tartest.Dir("home", at(2020)), tartest.Dir("home/u", at(2020), tartest.Owner(100000, 100000), tartest.Mode(0o750)),
			tartest.File("home/u/notes", "private\n", at(1960), tartest.Owner(100000, 100000), tartest.Mode(0o600)),
			tartest.File("usr/bin/tool", "#!/bin/sh\n", at(2020), tartest.Mode(0o4755)),
			tartest.File("usr/bin/ping", "ping", at(2020), tartest.Mode(0o755), tartest.Xattr("security.capability", string(capv2))),
			tartest.File("etc/big", string(big), at(2020)),
			tartest.Entry{Hdr: tar.Header{Typeflag: tar.TypeReg, Name: "etc/sparse", Size: int64(len(sparse)), Mode: 0o644, ModTime: tartest.Epoch}, Body: sparse},
			tartest.File("etc/old", "old config", at(2020)),
			tartest.Link("etc/old.bak", "etc/old", at(2020)),
			tartest.Dir("dev", at(2020)), tartest.Char("dev/null", 1, 3, at(2020)), tartest.Block("dev/vda", 254, 0, at(2020)),
			tartest.Fifo("dev/initctl", at(2020)),
			tartest.Dir("var", at(2020)), tartest.Dir("var/cache", at(2020)),
			tartest.File("var/cache/a", "a", at(2020)), tartest.File("var/cache/b", strings.Repeat("b", 70000), at(2020)),
			tartest.Dir("opt", at(2020)), tartest.Dir("opt/x", at(2020)), tartest.File("opt/x/y", "y", at(2020)),
			tartest.File("etc/xattrs", "x", at(2020), tartest.Xattr("user.one", "1"), tartest.Xattr("user.two", strings.Repeat("v", 300)), tartest.Xattr("trusted.t", "t")),
			tartest.Symlink("etc/long-link", strings.Repeat("very/long/target/", 8), at(2020)),
		),
		tartest.Tar(
			tartest.Whiteout("etc/big"), // its blocks are reused below
			tartest.File("etc/big2", strings.Repeat("new data ", 300000), at(2030)),
			tartest.Dir("var/cache", at(2021)), tartest.Opaque("var/cache"), tartest.File("var/cache/c", "c", at(2021)),
			tartest.File("etc/old", "new config", at(2021)),
			tartest.File("opt/x", "x is a file now", at(2021)),
			tartest.Dir("etc/d", at(2040)),
		),
		tartest.Tar(
			tartest.Whiteout("opt"),
			tartest.Dir("opt", at(2022)), tartest.File("opt/z", "z", at(2022)),
			tartest.Link("usr/bin/tool2", "/usr/bin/tool", at(2022)),
			tartest.File("bin/added", "through the symlink", at(2022), tartest.Mode(0o755)),
		),
	}
}

func needTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("%s not installed (Debian package e2fsprogs): it is the oracle this test reads the image with", name)
	}
	return p
}

func fsck(t *testing.T, img string) {
	t.Helper()
	out, err := exec.Command(needTool(t, "e2fsck"), "-fn", img).CombinedOutput()
	if err != nil {
		t.Fatalf("e2fsck -fn %s: %v\n%s", img, err, out)
	}
}

func sha(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", sha256.Sum256(b))
}

// TestExt4MatchesDir converts one rich image to a directory and to an ext4 image, checks the
// image with e2fsck, and compares it with the directory through two readers nobody here
// wrote: debugfs's rdump, and the kernel (a read-only loop mount, when running as root).
func TestExt4MatchesDir(t *testing.T) {
	needTool(t, "e2fsck") // before any work: skipped with the reason when missing
	ref := pushed(t, tartest.Image(richLayers()...))
	ctx := context.Background()
	tmp := t.TempDir()
	dir := filepath.Join(tmp, "rootfs")
	if _, err := img2ext4.Convert(ctx, ref, dir, img2ext4.WithFormat(img2ext4.FormatDir)); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(tmp, "rootfs.img")
	if _, err := img2ext4.Convert(ctx, ref, img); err != nil {
		t.Fatal(err)
	}
	fsck(t, img)
	want, err := treesnap.Dir(dir, treesnap.Options{})
	if err != nil {
		t.Fatal(err)
	}

	t.Run("debugfs rdump", func(t *testing.T) {
		out := filepath.Join(tmp, "rdump")
		os.Mkdir(out, 0o755)
		if b, err := exec.Command(needTool(t, "debugfs"), "-R", "rdump / "+out, img).CombinedOutput(); err != nil {
			t.Fatalf("debugfs rdump: %v\n%s", err, b)
		}
		got, err := treesnap.Dir(out, treesnap.Options{NoXattrs: true})
		if err != nil {
			t.Fatal(err)
		}
		// rdump writes each name as its own file, restores times to the second and
		// skips device nodes and fifos: compare what it keeps.
		norm := func(es []treesnap.Entry) []string {
			var lines []string
			for _, e := range es {
				if e.Type == 'c' || e.Type == 'b' || e.Type == 'p' || e.Path == "lost+found" {
					continue
				}
				e.Link, e.Xattrs = "", nil
				e.Mtime = e.Mtime.Truncate(time.Second)
				if os.Geteuid() != 0 {
					e.UID, e.GID = 0, 0
				}
				if e.Type == 'l' || e.Type == 'd' {
					e.Mtime = time.Time{} // rdump does not restore these
				}
				// rdump reads only the low 32 bits of a time (1960 comes back as 2096)
				// and chowns after chmod, which drops setuid and setgid; the kernel
				// mount below checks both.
				if y := e.Mtime.Year(); y < 1970 || y > 2037 {
					e.Mtime = time.Time{}
				}
				e.Perm &^= 0o6000
				lines = append(lines, e.String())
			}
			return lines
		}
		if d := treesnap.Diff(norm(want), norm(got)); d != "" {
			t.Errorf("debugfs rdump differs from the dir output (-dir +ext4):\n%s", d)
		}
	})

	t.Run("kernel mount", func(t *testing.T) {
		if os.Geteuid() != 0 {
			t.Skip("loop mounting needs root")
		}
		mnt := filepath.Join(tmp, "mnt")
		os.Mkdir(mnt, 0o755)
		if b, err := exec.Command("mount", "-o", "ro,loop", img, mnt).CombinedOutput(); err != nil {
			t.Skipf("cannot loop-mount here: %v %s", err, b)
		}
		defer exec.Command("umount", mnt).Run()
		got, err := treesnap.Dir(mnt, treesnap.Options{})
		if err != nil {
			t.Fatal(err)
		}
		var gotNoLF []treesnap.Entry
		for _, e := range got {
			if e.Path != "lost+found" {
				gotNoLF = append(gotNoLF, e)
			}
		}
		if d := treesnap.Diff(treesnap.Lines(want), treesnap.Lines(gotNoLF)); d != "" {
			t.Errorf("kernel view differs from the dir output (-dir +ext4):\n%s", d)
		}
	})
}

func TestExt4Deterministic(t *testing.T) {
	ref := pushed(t, tartest.Image(richLayers()...))
	tmp := t.TempDir()
	var sums []string
	for i := range 2 {
		out := filepath.Join(tmp, "img"+strconv.Itoa(i))
		if _, err := img2ext4.Convert(context.Background(), ref, out); err != nil {
			t.Fatal(err)
		}
		sums = append(sums, sha(t, out))
	}
	if sums[0] != sums[1] {
		t.Error("two conversions of one image differ")
	}
}

// dumpe2fs returns the superblock fields dumpe2fs -h prints.
func dumpe2fs(t *testing.T, img string) map[string]string {
	t.Helper()
	out, err := exec.Command(needTool(t, "dumpe2fs"), "-h", img).Output()
	if err != nil {
		t.Fatalf("dumpe2fs: %v", err)
	}
	m := map[string]string{}
	for _, l := range strings.Split(string(out), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok {
			m[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	return m
}

func blocksOf(t *testing.T, m map[string]string, key string) int64 {
	t.Helper()
	n, err := strconv.ParseInt(m[key], 10, 64)
	if err != nil {
		t.Fatalf("%s = %q", key, m[key])
	}
	return n
}

func TestExt4Shape(t *testing.T) {
	needTool(t, "e2fsck")
	needTool(t, "dumpe2fs")
	ref := pushed(t, tartest.Image(helloLayers()...))
	ctx := context.Background()
	tmp := t.TempDir()
	var res *img2ext4.Result
	conv := func(name string, e img2ext4.Ext4Options) (string, error) {
		out := filepath.Join(tmp, name)
		var err error
		res, err = img2ext4.Convert(ctx, ref, out, img2ext4.WithExt4(e))
		return out, err
	}
	size := func(p string) int64 {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		return st.Size()
	}
	// available is what df shows an ordinary user, from the superblock
	available := func(sb map[string]string) int64 {
		blocks := blocksOf(t, sb, "Block count")
		return (blocksOf(t, sb, "Free blocks") - blocksOf(t, sb, "Reserved block count") - min(blocks/50, 4096)) * 4096
	}

	def, err := conv("default.img", img2ext4.Ext4Options{})
	if err != nil {
		t.Fatal(err)
	}
	fsck(t, def)
	if size(def)%img2ext4.DefaultAlign != 0 {
		t.Errorf("default size %d is not 2 MiB aligned", size(def))
	}
	sb := dumpe2fs(t, def)
	for _, f := range []string{"has_journal", "ext_attr", "dir_index", "filetype", "extent", "64bit", "flex_bg", "sparse_super", "large_file", "huge_file", "dir_nlink", "extra_isize", "metadata_csum"} {
		if !strings.Contains(" "+sb["Filesystem features"]+" ", " "+f+" ") {
			t.Errorf("feature %s missing: %s", f, sb["Filesystem features"])
		}
	}
	if blocksOf(t, sb, "Block count")*4096 != size(def) {
		t.Errorf("filesystem has %s blocks, file is %d bytes", sb["Block count"], size(def))
	}
	if sb["Reserved block count"] != "0" || available(sb) < 64<<20 {
		t.Errorf("default image: %s blocks reserved for root, %d bytes available; want 0 and >= 64 MiB", sb["Reserved block count"], available(sb))
	}
	if fs := res.Filesystem; fs == nil || fs.Size != size(def) || fs.Available() != available(sb) || fs.Inodes != uint64(blocksOf(t, sb, "Inode count")) {
		t.Errorf("Result.Filesystem = %+v, want size %d, %d bytes available, %s inodes", fs, size(def), available(sb), sb["Inode count"])
	}

	unaligned, err := conv("unaligned.img", img2ext4.Ext4Options{Align: 4096})
	if err != nil {
		t.Fatal(err)
	}
	fsck(t, unaligned)
	if size(unaligned) > size(def) {
		t.Errorf("4 KiB alignment gave %d bytes, 2 MiB gave %d", size(unaligned), size(def))
	}

	smallest, err := conv("smallest.img", img2ext4.Ext4Options{FreeSet: true, Align: 4096})
	if err != nil {
		t.Fatal(err)
	}
	fsck(t, smallest)
	if a := available(dumpe2fs(t, smallest)); a < 1<<20 || a >= 2<<20 || size(smallest) >= size(unaligned)-60<<20 {
		t.Errorf("--free 0: %d bytes, %d available; want the smallest image with 1 MiB available", size(smallest), a)
	}

	free, err := conv("free.img", img2ext4.Ext4Options{FreeBytes: 100 << 20, Align: 4096})
	if err != nil {
		t.Fatal(err)
	}
	fsck(t, free)
	if got := available(dumpe2fs(t, free)); got < 100<<20 {
		t.Errorf("--free 100M left %d bytes available", got)
	}
	pct, err := conv("pct.img", img2ext4.Ext4Options{FreePercent: 100, Align: 4096})
	if err != nil {
		t.Fatal(err)
	}
	fsck(t, pct)
	if size(pct) >= size(unaligned) || size(pct) < size(smallest) {
		t.Errorf("--free 100%% of a small content gave %d bytes; want between %d and %d", size(pct), size(smallest), size(unaligned))
	}
	reserved, err := conv("reserved.img", img2ext4.Ext4Options{ReservedPercent: 5, Align: 4096})
	if err != nil {
		t.Fatal(err)
	}
	rsb := dumpe2fs(t, reserved)
	if blocksOf(t, rsb, "Reserved block count") != blocksOf(t, rsb, "Block count")*5/100 || available(rsb) < 64<<20 {
		t.Errorf("--reserved 5%%: %s of %s blocks reserved, %d bytes available", rsb["Reserved block count"], rsb["Block count"], available(rsb))
	}

	fixed, err := conv("fixed.img", img2ext4.Ext4Options{Size: 48 << 20, Label: "rootfs", UUID: "01234567-89ab-cdef-0123-456789abcdef", NoJournal: true, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	fsck(t, fixed)
	if size(fixed) != 48<<20 {
		t.Errorf("--size 48M gave %d bytes", size(fixed))
	}
	xsb := dumpe2fs(t, fixed)
	if xsb["Filesystem volume name"] != "rootfs" || xsb["Filesystem UUID"] != "01234567-89ab-cdef-0123-456789abcdef" {
		t.Errorf("label %q uuid %q", xsb["Filesystem volume name"], xsb["Filesystem UUID"])
	}
	if strings.Contains(xsb["Filesystem features"], "has_journal") || !strings.Contains(xsb["Filesystem features"], "read-only") {
		t.Errorf("features %q: want no journal, read-only", xsb["Filesystem features"])
	}

	// too small a size: the error names the size that fits
	_, err = conv("small.img", img2ext4.Ext4Options{Size: 1 << 20})
	var se *ext4writer.SizeError
	if !errors.As(err, &se) || se.Need <= se.Limit || !strings.Contains(err.Error(), ext4writer.FormatSize(se.Need)) {
		t.Errorf("1 MiB fixed size: err = %v, want a size error naming the size that fits", err)
	}
	if _, err := os.Stat(filepath.Join(tmp, "small.img")); err == nil {
		t.Error("a failed conversion left its output")
	}
	if se != nil {
		fits, err := conv("fits.img", img2ext4.Ext4Options{Size: se.Need})
		if err != nil {
			t.Fatalf("the size the error named: %v", err)
		}
		fsck(t, fits)
	}
	left, _ := filepath.Glob(filepath.Join(tmp, ".*"))
	if len(left) > 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

// TestExt4NoDeadData deletes and replaces large files in upper layers: the image must carry
// only the live data, because the writer reuses the freed blocks.
func TestExt4NoDeadData(t *testing.T) {
	needTool(t, "e2fsck")
	needTool(t, "dumpe2fs")
	blob := func(seed uint64, n int) string {
		r := rand.New(rand.NewPCG(seed, seed))
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(r.UintN(256))
		}
		return string(b)
	}
	const mb = 1 << 20
	ref := pushed(t, tartest.Image(
		tartest.Tar(tartest.File("a", blob(1, 20*mb)), tartest.File("b", blob(2, 10*mb))),
		tartest.Tar(tartest.Whiteout("a"), tartest.File("b", blob(3, 10*mb)), tartest.File("c", blob(4, 15*mb))),
		tartest.Tar(tartest.File("c", blob(5, 5*mb))),
	))
	out := filepath.Join(t.TempDir(), "img")
	if _, err := img2ext4.Convert(context.Background(), ref, out, img2ext4.WithExt4(img2ext4.Ext4Options{Align: 4096, NoJournal: true})); err != nil {
		t.Fatal(err)
	}
	fsck(t, out)
	sb := dumpe2fs(t, out)
	used := (blocksOf(t, sb, "Block count") - blocksOf(t, sb, "Free blocks")) * 4096
	live := int64(15 * mb)
	if used > live+live/100+2*mb {
		t.Errorf("image uses %d bytes for %d bytes of live data: dead data kept", used, live)
	}
	var st syscall.Stat_t
	syscall.Stat(out, &st)
	t.Logf("live %d, used blocks %d bytes, file %s bytes, allocated %d bytes", live, used, sb["Block count"], st.Blocks*512)
}

// TestExt4NoDeletedBytes converts layers that delete a file holding a marker (a whiteout in
// the next layer) and replace one within the same layer: the image's bytes hold no marker.
func TestExt4NoDeletedBytes(t *testing.T) {
	needTool(t, "e2fsck")
	marker := func(tag string, n int) string {
		var b strings.Builder
		for i := 0; b.Len() < n; i++ {
			fmt.Fprintf(&b, "DELETED-%s-MARKER line %d\n", tag, i)
		}
		return b.String()[:n]
	}
	for _, tc := range []struct {
		name   string
		layers [][]byte
	}{
		{"whiteout", [][]byte{
			tartest.Tar(tartest.Dir("etc"), tartest.File("etc/secret", marker("A", 2<<20))),
			tartest.Tar(tartest.Whiteout("etc/secret"), tartest.File("etc/other", "other\n")),
		}},
		{"replaced-in-layer", [][]byte{
			tartest.Tar(tartest.File("key", marker("A", 2<<20)), tartest.File("pad", "x"), tartest.File("key", "new key\n")),
		}},
		{"opaque-dir", [][]byte{
			tartest.Tar(tartest.Dir("cache"), tartest.File("cache/blob", marker("A", 1<<20))),
			tartest.Tar(tartest.Dir("cache"), tartest.Opaque("cache"), tartest.File("cache/fresh", "fresh\n")),
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ref := pushed(t, tartest.Image(tc.layers...))
			out := filepath.Join(t.TempDir(), "img")
			if _, err := img2ext4.Convert(context.Background(), ref, out); err != nil {
				t.Fatal(err)
			}
			fsck(t, out)
			b, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			if n := strings.Count(string(b), "DELETED-A-MARKER"); n > 0 {
				t.Errorf("the image holds %d copies of the deleted file's marker", n)
			}
		})
	}
}
