package layerapply_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/img2ext4/img2ext4/internal/tartest"
	"github.com/img2ext4/img2ext4/internal/treesnap"
	"github.com/img2ext4/img2ext4/layerapply"
)

// The differential tests check layerapply against independent implementations on one rich
// image: the dir sink against `umoci unpack` (issue 2), and the tar sink, extracted by GNU
// tar, against the dir sink. Both compare whole trees with treesnap: type, permissions,
// owner, size, content, link target, extended attributes, device numbers, mtime and
// hard-link groups. They need root (owners, devices, trusted.* and security.* attributes).
//
// The input avoids what umoci 0.4.7 is known to do differently rather than loosening the
// comparison: times are whole seconds (it drops nanoseconds), no xattr value is empty (it
// drops those), every directory has its own entry in the first layer that creates it (it
// stamps implicit parents with the current time), no hard link precedes its target in a
// layer (it fails on those), and user.* attributes sit only on files and directories (the
// kernel refuses them elsewhere, and umoci fails rather than skips). umoci also stamps the
// current time on a directory that a layer re-declared when an opaque marker or whiteout
// later in the same layer removes lower children below it; the last layer re-declares
// those directories once more to give them a layer time.

// at is a whole-second instant n hours after tartest.Epoch.
func at(n int) tartest.Opt { return tartest.Mtime(tartest.Epoch.Add(time.Duration(n) * time.Hour)) }

// capNetRaw is a v2 security.capability value (20 bytes): effective, permitted CAP_NET_RAW.
func capNetRaw() string {
	b := make([]byte, 20)
	binary.LittleEndian.PutUint32(b[0:], 0x02000001) // VFS_CAP_REVISION_2 | VFS_CAP_FLAGS_EFFECTIVE
	binary.LittleEndian.PutUint32(b[4:], 1<<13)      // permitted[0]: CAP_NET_RAW
	return string(b)
}

// randomBytes returns n deterministic pseudo-random bytes.
func randomBytes(n int, seed byte) string {
	b := make([]byte, n)
	var s [32]byte
	s[0] = seed
	_, _ = rand.NewChaCha8(s).Read(b)
	return string(b)
}

// sparseBody is 300 KiB with runs of zero blocks, so the dir sink leaves holes.
func sparseBody() string {
	b := make([]byte, 300<<10)
	copy(b[0:], "head")
	copy(b[100<<10:], randomBytes(4096, 7))
	copy(b[len(b)-5:], "tail\n")
	return string(b)
}

// differentialLayers is the rich image, bottom first.
func differentialLayers() [][]byte {
	var (
		d     = tartest.Dir
		f     = tartest.File
		sl    = tartest.Symlink
		ln    = tartest.Link
		mode  = tartest.Mode
		owner = tartest.Owner
		xattr = tartest.Xattr
	)
	base := []E{
		d("etc", at(1)),
		f("etc/passwd", "root:x:0:0::/root:/bin/sh\n", at(2), xattr("user.mime_type", "text/plain"), xattr("user.bin", "\x00\x01\xfe\xff")),
		f("etc/shadow", "root:*:19000::::::\n", mode(0o640), owner(0, 42), at(3), xattr("trusted.note", "secret")),
		f("etc/motd", "hello\n", at(4)),
		sl("etc/localtime", "/usr/share/zoneinfo/UTC", owner(1234, 5678), at(5), xattr("trusted.sym", "on a symlink")), // absolute, dangling
		d("usr", at(6)),
		d("usr/bin", at(7)),
		f("usr/bin/su", "su", mode(0o4755), at(8)),
		f("usr/bin/wall", "wall", mode(0o2755), owner(0, 70000), at(9)),
		f("usr/bin/ping", "ping", mode(0o755), at(10), xattr("security.capability", capNetRaw())),
		f("usr/bin/python3", "py", mode(0o755), at(11)),
		ln("usr/bin/python3.11", "usr/bin/python3"),
		f("usr/bin/a", "abc", at(12)),
		ln("usr/bin/b", "usr/bin/a"),
		ln("usr/bin/c", "/usr/bin/a"), // absolute link target
		d("usr/lib", at(13)),
		f("usr/lib/libfoo.so.1", "elf", at(14)),
		sl("usr/lib/libfoo.so", "libfoo.so.1", at(15)), // relative
		d("usr/share", mode(0o555), at(16)),            // read-only with children
		f("usr/share/ro", "ro", mode(0o444), at(17)),
		f("usr/share/none", "none", mode(0), at(18)),
		d("tmp", mode(0o1777), at(19)),
		d("srv", mode(0o2775), owner(165536, 165536), at(20), xattr("user.comment", "srv dir")),
		d("home", at(21)),
		d("home/u", mode(0o700), owner(1000000, 3000000), at(22)), // gid beyond the octal field: PAX
		f("home/u/big", randomBytes(1<<20, 1), mode(0o600), owner(1000000, 3000000), at(23)),
		f("home/u/sparse", sparseBody(), at(24)),
		sl("dangling", "nowhere/at/all", at(25)),
		d("dev", at(26)),
		tartest.Char("dev/null", 1, 3, mode(0o666), at(27)),
		tartest.Block("dev/sda", 8, 0, mode(0o660), owner(0, 6), at(28)),
		tartest.Block("dev/nvme0n1p9", 259, 70000, mode(0o660), at(29)), // minor beyond 8 bits
		tartest.Fifo("dev/initctl", mode(0o600), at(30)),
		d("var", at(31)),
		d("var/cache", at(32)),
		d("var/cache/apt", at(33)),
		f("var/cache/apt/pkgcache.bin", "cache", at(34)),
		d("var/lib", at(35)),
		f("var/lib/old", "old", at(36)),
		d("opt", at(37)),
		d("opt/app", at(38)),
		f("opt/app/run", "run", at(39)),
		f("data", "was a file", at(40)),
		d("lib", at(41)),
		f("lib/ld.so", "ld", at(42)),
		d("opq1", at(43)),
		f("opq1/a", "a", at(44)),
		d("opq1/sub", at(45)),
		f("opq1/sub/c", "c", at(46)),
		d("opq2", at(47)),
		f("opq2/x", "x", at(48)),
		f("opq2/keep", "lower", at(49)),
		d("opq2/sub", at(50)),
		f("opq2/sub/y", "y", at(51)),
	}
	second := []E{
		tartest.Whiteout("etc/motd"),
		tartest.Whiteout("var/cache"),
		d("etc", mode(0o750), at(100)), // directory over directory: new metadata
		f("etc/hostname", "box\n", at(101)),
		f("usr/lib/libbar.so", "bar", at(102)), // into a lower directory, no entry for it
		d("opq1", at(103)),
		tartest.Opaque("opq1"), // marker before the new children
		f("opq1/new", "new", at(104)),
		d("opq1/sub2", at(105)),
		d("opq2", at(106)),
		f("opq2/keep", "upper", at(107)),
		d("opq2/sub", at(108)), // re-declared: its lower child is still hidden
		f("opq2/sub/z", "z", at(109)),
		tartest.Opaque("opq2"),              // marker after the new children
		f("opt/app", "now a file", at(110)), // dir → file
		d("data", mode(0o711), at(111)),     // file → dir
		f("data/inside", "inside", at(112)),
		sl("lib", "usr/lib", at(113)),         // dir → symlink
		ln("usr/bin/su-again", "usr/bin/su"),  // link to a lower-layer file
		f("usr/bin/b", "b replaced", at(114)), // one name of a group overwritten
		ln("etc/shadow-", "etc/shadow"),       // the link shares the target's xattrs
		tartest.Fifo("dev/null2", at(115)),    // a second fifo, hard-linked below
		ln("dev/null3", "dev/null2"),          // hard link to a fifo
	}
	third := []E{
		f("etc/motd", "welcome back\n", at(200)), // whiteout re-created in a later layer
		d("var/cache", mode(0o700), at(201)),
		f("var/cache/fresh", "fresh", at(202)),
		d("var/lib", at(203)),
		f("var/lib/new", "new", at(204)),
		tartest.Whiteout("var/lib"), // keeps what this layer wrote below it
		ln("usr/bin/python", "usr/bin/python3.11"),
		tartest.Whiteout("usr/bin/a"), // the link target goes, usr/bin/c stays
		d("dangling", at(205)),        // symlink → dir
		f("dangling/file", "f", at(206)),
		f("old", "before 1970", tartest.Mtime(time.Date(1960, 6, 1, 12, 0, 0, 0, time.UTC))),
		f("future", "after 2038", tartest.Mtime(time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC))),
		tartest.Char("dev/sda", 8, 16, mode(0o600), at(207)), // block → char
	}
	fourth := []E{
		d("opq1", mode(0o751), at(300)),
		tartest.Opaque("opq1"), // a second opaque hides the second layer's children
		f("opq1/final", "final", at(301)),
		d("usr/share/more", at(302)),
		f("usr/share/more/x", "x", at(303)),
		d("srv", mode(0o750), owner(165537, 0), at(304), xattr("user.comment", "replaced")),
		// umoci removes lower children below a directory that this layer re-declared
		// (opaque opq2 and whiteout var/lib above) without restoring that directory's
		// mtime, which it then stamps with the current time. Re-declaring both here keeps
		// those removals in the comparison and gives them a time from the layer.
		d("opq2/sub", at(305)),
		d("var/lib", mode(0o750), at(306)),
	}
	return layers(base, second, third, fourth)
}

type differentialCase struct {
	name   string
	layers [][]byte
	skip   string // a known bug in layerapply that the case shows
}

func differentialCases() []differentialCase {
	return []differentialCase{
		{name: "rich image", layers: differentialLayers()},
		{
			// An upper directory's xattrs replace the lower ones (a dir-sink bug once kept both).
			name: "directory over directory replaces its xattrs",
			layers: layers(
				[]E{tartest.Dir("a", tartest.Xattr("user.a", "1"), tartest.Xattr("user.b", "2")), tartest.Dir("b", tartest.Xattr("user.x", "1"))},
				[]E{tartest.Dir("a", tartest.Xattr("user.b", "3")), tartest.Dir("b", at(1))},
			),
		},
	}
}

// ociImage is tartest.Image with OCI media types, which umoci requires.
func ociImage(t *testing.T, tars [][]byte) v1.Image {
	t.Helper()
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	for _, b := range tars {
		var err error
		img, err = mutate.Append(img, mutate.Addendum{Layer: tartest.Layer(b), MediaType: types.OCILayer})
		if err != nil {
			t.Fatal(err)
		}
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatal(err)
	}
	return img
}

// writeLayout writes img as an OCI layout tagged "test" and returns the image read back.
func writeLayout(t *testing.T, dir string, img v1.Image) v1.Image {
	t.Helper()
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": "test"})); err != nil {
		t.Fatal(err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	back, err := p.Image(d)
	if err != nil {
		t.Fatal(err)
	}
	return back
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: owners, device nodes, trusted.* and security.* attributes")
	}
}

// applyToDir applies img with the dir sink into root.
func applyToDir(t *testing.T, img v1.Image, root string) {
	t.Helper()
	d, err := layerapply.NewDir(root)
	if err != nil {
		t.Fatal(err)
	}
	err = layerapply.Apply(context.Background(), d, img)
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	if s := d.Skipped(); !s.Zero() {
		t.Fatalf("dir sink skipped entries as root: %v", s)
	}
}

func snapshot(t *testing.T, root string) []string {
	t.Helper()
	es, err := treesnap.Dir(root, treesnap.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return treesnap.Lines(es)
}

func run(t *testing.T, name string, args ...string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
}

// TestDifferentialUmoci checks that the dir sink unpacks each image exactly as
// `umoci unpack` does from the same OCI layout.
func TestDifferentialUmoci(t *testing.T) {
	requireRoot(t)
	umoci, err := exec.LookPath("umoci")
	if err != nil {
		t.Skip("umoci not installed")
	}
	for _, tc := range differentialCases() {
		t.Run(tc.name, func(t *testing.T) {
			if tc.skip != "" {
				t.Skip(tc.skip)
			}
			tmp := t.TempDir()
			img := writeLayout(t, filepath.Join(tmp, "layout"), ociImage(t, tc.layers))

			bundle := filepath.Join(tmp, "bundle")
			run(t, umoci, "unpack", "--image", filepath.Join(tmp, "layout")+":test", bundle)
			want := snapshot(t, filepath.Join(bundle, "rootfs"))

			ours := filepath.Join(tmp, "ours")
			applyToDir(t, img, ours)
			got := snapshot(t, ours)

			if d := treesnap.Diff(want, got); d != "" {
				t.Errorf("dir sink differs from umoci unpack (-umoci +ours):\n%s", d)
			}
			if tc.name == "rich image" {
				checkRich(t, got)
			}
		})
	}
}

// checkRich spot-checks the rich image's merged tree, so that an input both
// implementations ignore cannot pass unnoticed.
func checkRich(t *testing.T, lines []string) {
	t.Helper()
	all := strings.Join(lines, "\n") + "\n"
	for _, s := range []string{
		`usr/bin/ping f 0755 0:0 size=4 "ping" dev=0,0 mtime=2024-01-02T13:04:05Z link= xattrs=[security.capability="\x01\x00\x00\x02\x00 \x00`,
		`etc/shadow- f 0640 0:42 size=19 "root:*:19000::::::\n" dev=0,0 mtime=2024-01-02T06:04:05Z link=etc/shadow xattrs=[trusted.note="secret"]`,
		`etc/localtime l 0777 1234:5678 size=0 "/usr/share/zoneinfo/UTC" dev=0,0 mtime=2024-01-02T08:04:05Z link= xattrs=[trusted.sym="on a symlink"]`,
		`dev/nvme0n1p9 b 0660 0:0 size=0 "" dev=259,70000 `,
		`dev/null3 p 0644 0:0 size=0 "" dev=0,0 mtime=2024-01-06T22:04:05Z link=dev/null2 `,
		`home/u/big f 0600 1000000:3000000 size=1048576 `,
		`usr/bin/python3.11 f 0755 0:0 size=2 "py" dev=0,0 mtime=2024-01-02T14:04:05Z link=usr/bin/python `,
		`usr/bin/c f 0644 0:0 size=3 "abc" dev=0,0 mtime=2024-01-02T15:04:05Z link= `,
		`etc/motd f 0644 0:0 size=13 "welcome back\n"`,
		`old f 0644 0:0 size=11 "before 1970" dev=0,0 mtime=1960-06-01T12:00:00Z `,
		`future f 0644 0:0 size=10 "after 2038" dev=0,0 mtime=2100-01-01T00:00:00Z `,
	} {
		if !strings.Contains(all, s) {
			t.Errorf("merged tree lacks %s", s)
		}
	}
	var names []string
	for _, l := range lines {
		names = append(names, l[:strings.IndexByte(l, ' ')])
	}
	want := []string{"opq1", "opq1/final", "opq2", "opq2/keep", "opq2/sub", "opq2/sub/z", "var", "var/cache", "var/cache/fresh", "var/lib", "var/lib/new"}
	var gotSome []string
	for _, n := range names {
		for _, p := range []string{"opq1", "opq2", "var"} {
			if n == p || strings.HasPrefix(n, p+"/") {
				gotSome = append(gotSome, n)
			}
		}
	}
	if !slices.Equal(gotSome, want) {
		t.Errorf("opaque and whiteout results: got %q, want %q", gotSome, want)
	}
}

// TestDifferentialTar checks that the tar sink's flattened tar, extracted by GNU tar as
// root, gives the same tree as the dir sink.
func TestDifferentialTar(t *testing.T) {
	requireRoot(t)
	gnutar, err := exec.LookPath("tar")
	if err != nil {
		t.Skip("tar not installed")
	}
	if out, err := exec.Command(gnutar, "--version").Output(); err != nil || !bytes.Contains(out, []byte("GNU tar")) {
		t.Skip("tar is not GNU tar")
	}
	for _, tc := range differentialCases() {
		t.Run(tc.name, func(t *testing.T) {
			if tc.skip != "" {
				t.Skip(tc.skip)
			}
			tmp := t.TempDir()
			img := writeLayout(t, filepath.Join(tmp, "layout"), ociImage(t, tc.layers))

			ours := filepath.Join(tmp, "ours")
			applyToDir(t, img, ours)
			want := snapshot(t, ours)

			var buf bytes.Buffer
			s, err := layerapply.NewTar(&buf, tmp)
			if err != nil {
				t.Fatal(err)
			}
			err = layerapply.Apply(context.Background(), s, img)
			if cerr := s.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				t.Fatal(err)
			}
			out := filepath.Join(tmp, "out.tar")
			if err := os.WriteFile(out, buf.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
			extracted := filepath.Join(tmp, "extracted")
			if err := os.Mkdir(extracted, 0o755); err != nil {
				t.Fatal(err)
			}
			run(t, gnutar, "--xattrs", "--xattrs-include=*", "--same-owner", "--numeric-owner", "-xpf", out, "-C", extracted)
			got := snapshot(t, extracted)

			if d := treesnap.Diff(want, got); d != "" {
				t.Errorf("tar sink extracted by GNU tar differs from the dir sink (-dir +tar):\n%s", d)
			}
		})
	}
}
