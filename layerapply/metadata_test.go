package layerapply_test

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/img2ext4/img2ext4/internal/tartest"
	"github.com/img2ext4/img2ext4/internal/treesnap"
	"github.com/img2ext4/img2ext4/layerapply"
	"golang.org/x/sys/unix"
)

func capV3(rootid uint32) string {
	b := make([]byte, 24)
	binary.LittleEndian.PutUint32(b[0:], 0x03000001) // v3, effective
	binary.LittleEndian.PutUint32(b[4:], 1<<10)      // CAP_NET_BIND_SERVICE permitted
	binary.LittleEndian.PutUint32(b[20:], rootid)
	return string(b)
}

func TestMetadataDir(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("owners, devices and trusted/security xattrs need root")
	}
	t1 := time.Date(1969, 7, 20, 20, 17, 40, 123456789, time.UTC)
	t2 := time.Date(2040, 1, 1, 0, 0, 0, 5, time.UTC)
	layer := tartest.Tar(
		tartest.Dir("d", tartest.Mode(0o1777), tartest.Owner(100000, 200000), tartest.Mtime(t1)),
		tartest.File("d/suid", "x", tartest.Mode(0o4755), tartest.Owner(70000, 70001), tartest.Mtime(t2)),
		tartest.File("d/sgid", "y", tartest.Mode(0o2711)),
		tartest.File("d/cap", "z", tartest.Mode(0o755), tartest.Xattr("security.capability", capV3(0))),
		tartest.File("d/x", "w", tartest.Xattr("user.a", "1"), tartest.Xattr("trusted.b", "2"),
			tartest.PAX("LIBARCHIVE.xattr.user.b%20c", base64.StdEncoding.EncodeToString([]byte("bin\x00ary")))),
		tartest.Symlink("d/ln", "suid", tartest.Owner(5, 6), tartest.Mtime(t1)),
		tartest.Dir("ro", tartest.Mode(0o555)),
		tartest.File("ro/inside", "i", tartest.Mode(0o400)),
	)
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
	es, err := treesnap.Dir(root, treesnap.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ep := tartest.Epoch.Format(time.RFC3339Nano)
	capv2 := capV3(0)[:20]
	capv2 = "\x01\x00\x00\x02" + capv2[4:]
	want := []string{
		`d d 1777 100000:200000 size=0 "" dev=0,0 mtime=1969-07-20T20:17:40.123456789Z link= xattrs=[]`,
		`d/cap f 0755 0:0 size=1 "z" dev=0,0 mtime=` + ep + ` link= xattrs=[security.capability=` + quote(capv2) + `]`,
		`d/ln l 0777 5:6 size=0 "suid" dev=0,0 mtime=1969-07-20T20:17:40.123456789Z link= xattrs=[]`,
		`d/sgid f 2711 0:0 size=1 "y" dev=0,0 mtime=` + ep + ` link= xattrs=[]`,
		`d/suid f 4755 70000:70001 size=1 "x" dev=0,0 mtime=2040-01-01T00:00:00.000000005Z link= xattrs=[]`,
		`d/x f 0644 0:0 size=1 "w" dev=0,0 mtime=` + ep + ` link= xattrs=[trusted.b="2" user.a="1" user.b c="bin\x00ary"]`,
		`ro d 0555 0:0 size=0 "" dev=0,0 mtime=` + ep + ` link= xattrs=[]`,
		`ro/inside f 0400 0:0 size=1 "i" dev=0,0 mtime=` + ep + ` link= xattrs=[]`,
	}
	if diff := treesnap.Diff(want, treesnap.Lines(es)); diff != "" {
		t.Errorf("tree differs (-want +got):\n%s", diff)
	}
}

func quote(s string) string {
	var b strings.Builder
	b.WriteString(`"`)
	for _, c := range []byte(s) {
		switch {
		case c == '"' || c == '\\':
			b.WriteString(`\` + string(c))
		case c >= 0x20 && c < 0x7f:
			b.WriteByte(c)
		default:
			b.WriteString(`\x`)
			b.WriteString(string("0123456789abcdef"[c>>4]) + string("0123456789abcdef"[c&15]))
		}
	}
	b.WriteString(`"`)
	return b.String()
}

func TestDirTimesSetAfterChildren(t *testing.T) {
	old := time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC)
	lower := tartest.Tar(tartest.Dir("a", tartest.Mtime(old)), tartest.File("a/x", "1"))
	upper := tartest.Tar(tartest.Dir("a", tartest.Mtime(old)), tartest.File("a/y", "2"), tartest.Whiteout("a/x"))
	root := filepath.Join(t.TempDir(), "root")
	d, _ := layerapply.NewDir(root)
	if err := layerapply.Apply(context.Background(), d, tartest.Image(lower, upper)); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(root, "a"))
	if err != nil {
		t.Fatal(err)
	}
	if !st.ModTime().Equal(old) {
		t.Errorf("a mtime = %v, want %v (children were written after it)", st.ModTime(), old)
	}
}

func TestSparseFile(t *testing.T) {
	const size = 64 << 20
	body := make([]byte, size)
	copy(body, "head")
	copy(body[size-4:], "tail")
	hdr := tar.Header{Typeflag: tar.TypeReg, Name: "sparse", Size: size, Mode: 0o644, ModTime: tartest.Epoch}
	layer := tartest.Tar(tartest.Entry{Hdr: hdr, Body: body})
	root := filepath.Join(t.TempDir(), "root")
	d, _ := layerapply.NewDir(root)
	if err := layerapply.Apply(context.Background(), d, tartest.Image(layer)); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(root, "sparse"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, body) {
		t.Fatal("sparse file content differs")
	}
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(root, "sparse"), &st); err != nil {
		t.Fatal(err)
	}
	if st.Blocks*512 > 1<<20 {
		t.Errorf("sparse file uses %d bytes on disk, want holes for the zero blocks", st.Blocks*512)
	}
}

// TestGNUSparse feeds a real GNU sparse archive (PAX 1.0 format written by GNU tar) when tar
// is on the machine.
func TestGNUSparse(t *testing.T) {
	tmp := t.TempDir()
	src := filepath.Join(tmp, "src")
	if err := os.Mkdir(src, 0o755); err != nil {
		t.Fatal(err)
	}
	f, _ := os.Create(filepath.Join(src, "holes"))
	f.WriteAt([]byte("start"), 0)
	f.WriteAt([]byte("end"), 10<<20)
	f.Close()
	out := filepath.Join(tmp, "l.tar")
	if err := runTar(t, "--sparse", "--format=posix", "-C", src, "-cf", out, "holes"); err != nil {
		t.Skipf("GNU tar unavailable: %v", err)
	}
	layer, _ := os.ReadFile(out)
	tars := [][]byte{layer}
	content, err := os.ReadFile(filepath.Join(src, "holes"))
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("holes = sha256:%x", sha256.Sum256(content))
	for _, sink := range []func(*testing.T, [][]byte) ([]string, error){applyDir, applyTar} {
		got, err := sink(t, tars)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 || got[0] != want {
			t.Fatalf("got %q, want %q", got, want)
		}
	}
}
