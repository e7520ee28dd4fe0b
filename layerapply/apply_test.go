package layerapply_test

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/img2ext4/img2ext4/internal/tartest"
	"github.com/img2ext4/img2ext4/internal/treesnap"
	"github.com/img2ext4/img2ext4/layerapply"
)

type E = tartest.Entry

var (
	dir     = tartest.Dir
	file    = tartest.File
	symlink = tartest.Symlink
	link    = tartest.Link
	wh      = tartest.Whiteout
	opq     = tartest.Opaque
)

func layers(ls ...[]E) [][]byte {
	out := make([][]byte, len(ls))
	for i, l := range ls {
		out[i] = tartest.Tar(l...)
	}
	return out
}

// applyDir applies the layers into a fresh directory and returns its short listing.
func applyDir(t *testing.T, tars [][]byte) ([]string, error) {
	t.Helper()
	root := filepath.Join(t.TempDir(), "rootfs")
	d, err := layerapply.NewDir(root)
	if err != nil {
		t.Fatal(err)
	}
	err = layerapply.Apply(context.Background(), d, tartest.Image(tars...))
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}
	es, err := treesnap.Dir(root, treesnap.Options{NoXattrs: true})
	if err != nil {
		t.Fatal(err)
	}
	return treesnap.ShortLines(es), nil
}

// applyTar applies the layers into the tar sink and returns the short listing of the tar.
func applyTar(t *testing.T, tars [][]byte) ([]string, error) {
	t.Helper()
	var buf bytes.Buffer
	s, err := layerapply.NewTar(&buf, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	err = layerapply.Apply(context.Background(), s, tartest.Image(tars...))
	if cerr := s.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}
	return tarShort(t, buf.Bytes()), nil
}

// tarShort lists a flattened tar in treesnap's short format.
func tarShort(t *testing.T, b []byte) []string {
	t.Helper()
	tr := tar.NewReader(bytes.NewReader(b))
	var es []treesnap.Entry
	group := map[string]string{} // name -> first name
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Name == "./" {
			continue // the root, which treesnap listings leave out
		}
		e := treesnap.Entry{Path: strings.TrimSuffix(h.Name, "/")}
		switch h.Typeflag {
		case tar.TypeDir:
			e.Type = 'd'
		case tar.TypeReg:
			e.Type = 'f'
			c, _ := io.ReadAll(tr)
			e.Content = string(c)
			if len(c) > 256 {
				e.Content = fmt.Sprintf("sha256:%x", sha256.Sum256(c))
			}
		case tar.TypeSymlink:
			e.Type, e.Content = 'l', h.Linkname
		case tar.TypeLink:
			for i := range es {
				if es[i].Path == h.Linkname {
					e.Type, e.Content = es[i].Type, es[i].Content
				}
			}
			group[e.Path] = h.Linkname
			group[h.Linkname] = h.Linkname
		case tar.TypeChar:
			e.Type, e.Major, e.Minor = 'c', uint32(h.Devmajor), uint32(h.Devminor)
		case tar.TypeBlock:
			e.Type, e.Major, e.Minor = 'b', uint32(h.Devmajor), uint32(h.Devminor)
		case tar.TypeFifo:
			e.Type = 'p'
		}
		es = append(es, e)
	}
	firsts := map[string]string{}
	for n, f := range group {
		if cur, ok := firsts[f]; !ok || n < cur {
			firsts[f] = n
		}
	}
	for i := range es {
		if f, ok := group[es[i].Path]; ok {
			es[i].Link = firsts[f]
		}
	}
	slices.SortFunc(es, func(a, b treesnap.Entry) int { return strings.Compare(a.Path, b.Path) })
	return treesnap.ShortLines(es)
}

type ruleCase struct {
	name    string
	layers  [][]E
	want    []string
	wantErr error
}

var ruleCases = []ruleCase{
	{
		name:   "whiteout removes lower file",
		layers: [][]E{{dir("a"), file("a/x", "1"), file("a/y", "2")}, {wh("a/x")}},
		want:   []string{"a/", "a/y = 2"},
	},
	{
		name:   "whiteout removes lower directory and everything below",
		layers: [][]E{{dir("a"), dir("a/b"), file("a/b/c", "1"), file("k", "k")}, {wh("a")}},
		want:   []string{"k = k"},
	},
	{
		name:   "whiteout does not remove an entry of the same layer (whiteout after)",
		layers: [][]E{{file("x", "old")}, {file("x", "new"), wh("x")}},
		want:   []string{"x = new"},
	},
	{
		name:   "whiteout does not remove an entry of the same layer (whiteout before)",
		layers: [][]E{{file("x", "old")}, {wh("x"), file("x", "new")}},
		want:   []string{"x = new"},
	},
	{
		name: "whiteout of a directory keeps what the same layer wrote below it",
		layers: [][]E{
			{dir("a"), file("a/old", "1")},
			{dir("a"), file("a/new", "2"), wh("a")},
		},
		want: []string{"a/", "a/new = 2"},
	},
	{
		name:   "whiteout of a missing name is a no-op",
		layers: [][]E{{file("k", "k")}, {wh("nothing"), wh("no/such/dir")}},
		want:   []string{"k = k"},
	},
	{
		name:   "opaque hides lower children, marker first",
		layers: [][]E{{dir("a"), file("a/x", "1"), dir("a/sub"), file("a/sub/y", "2")}, {dir("a"), opq("a"), file("a/z", "3")}},
		want:   []string{"a/", "a/z = 3"},
	},
	{
		name:   "opaque hides lower children, marker after new children",
		layers: [][]E{{dir("a"), file("a/x", "1"), file("a/keep", "old")}, {dir("a"), file("a/z", "3"), file("a/keep", "new"), opq("a")}},
		want:   []string{"a/", "a/keep = new", "a/z = 3"},
	},
	{
		name:   "opaque keeps the directory itself",
		layers: [][]E{{dir("a"), file("a/x", "1")}, {opq("a")}},
		want:   []string{"a/"},
	},
	{
		name:   "opaque on the root",
		layers: [][]E{{file("x", "1"), dir("d")}, {opq("."), file("y", "2")}},
		want:   []string{"y = 2"},
	},
	{
		name:   "opaque in a single-layer image",
		layers: [][]E{{dir("a"), opq("a"), file("a/x", "1")}},
		want:   []string{"a/", "a/x = 1"},
	},
	{
		name:   "AUFS metadata is skipped",
		layers: [][]E{{dir(".wh..wh.plnk"), file(".wh..wh.plnk/123.456", "x"), file(".wh..wh.aufs", ""), file("k", "k")}},
		want:   []string{"k = k"},
	},
	{
		name:   "whiteout then directory re-created in a later layer",
		layers: [][]E{{dir("a"), file("a/foo", "1"), dir("b"), file("b/bar", "2")}, {wh("a")}, {dir("a"), file("a/baz", "3")}},
		want:   []string{"a/", "a/baz = 3", "b/", "b/bar = 2"},
	},
	{
		name:   "directory over directory merges",
		layers: [][]E{{dir("a"), file("a/x", "1")}, {dir("a", tartest.Mode(0o700)), file("a/y", "2")}},
		want:   []string{"a/", "a/x = 1", "a/y = 2"},
	},
	{
		name:   "file replaces directory",
		layers: [][]E{{dir("a"), file("a/x", "1")}, {file("a", "file")}},
		want:   []string{"a = file"},
	},
	{
		name:   "directory replaces file",
		layers: [][]E{{file("a", "file")}, {dir("a"), file("a/x", "1")}},
		want:   []string{"a/", "a/x = 1"},
	},
	{
		name:   "symlink replaces directory, directory replaces symlink",
		layers: [][]E{{dir("a"), file("a/x", "1"), symlink("b", "a"), dir("t")}, {symlink("a", "t"), dir("b")}},
		want:   []string{"a -> t", "b/", "t/"},
	},
	{
		name:   "redundant whiteout under a file that replaced a directory",
		layers: [][]E{{dir("foo"), file("foo/bar", "1")}, {file("foo", "f"), wh("foo/bar")}},
		want:   []string{"foo = f"},
	},
	{
		name:   "nested redundant whiteouts",
		layers: [][]E{{dir("foo"), file("foo/bar", "1")}, {wh("foo"), wh("foo/bar")}},
		want:   nil,
	},
	{
		name:   "repeated entry: the last one wins",
		layers: [][]E{{file("x", "first"), file("x", "second"), symlink("y", "a"), symlink("y", "b")}},
		want:   []string{"x = second", "y -> b"},
	},
	{
		name:   "hard link in the same layer",
		layers: [][]E{{file("a", "data"), link("b", "a")}},
		want:   []string{"a = data (link a)", "b = data (link a)"},
	},
	{
		name:   "hard link to a file of an earlier layer",
		layers: [][]E{{dir("usr"), file("usr/a", "data")}, {link("b", "usr/a")}},
		want:   []string{"b = data (link b)", "usr/", "usr/a = data (link b)"},
	},
	{
		name:   "hard link with an absolute target",
		layers: [][]E{{dir("usr"), dir("usr/bin"), file("usr/bin/perl", "p"), link("usr/bin/perlbug", "/usr/bin/perl")}},
		want:   []string{"usr/", "usr/bin/", "usr/bin/perl = p (link usr/bin/perl)", "usr/bin/perlbug = p (link usr/bin/perl)"},
	},
	{
		name:   "hard link before its target",
		layers: [][]E{{link("b", "a"), file("a", "data")}},
		want:   []string{"a = data (link a)", "b = data (link a)"},
	},
	{
		name:   "overwriting one name of a hard link leaves the other",
		layers: [][]E{{file("a", "old"), link("b", "a")}, {file("a", "new")}},
		want:   []string{"a = new", "b = old"},
	},
	{
		name:   "link target removed in a later layer",
		layers: [][]E{{file("a", "data"), link("b", "a")}, {wh("a")}},
		want:   []string{"b = data"},
	},
	{
		name:   "self-referencing hard link is ignored",
		layers: [][]E{{file("a", "data"), link("a", "a")}},
		want:   []string{"a = data"},
	},
	{
		name:   "hard link to a symlink",
		layers: [][]E{{symlink("s", "target"), link("h", "s")}},
		want:   []string{"h -> target", "s -> target"},
	},
	{
		name:   "merged-usr: write through relative symlinked parent",
		layers: [][]E{{dir("usr"), dir("usr/bin"), symlink("bin", "usr/bin")}, {dir("bin"), file("bin/ls", "ls")}},
		want:   []string{"bin/", "bin/ls = ls", "usr/", "usr/bin/"},
	},
	{
		name:   "merged-usr: file below symlinked parent resolves inside",
		layers: [][]E{{dir("usr"), dir("usr/bin"), symlink("bin", "usr/bin")}, {file("bin/ls", "ls")}},
		want:   []string{"bin -> usr/bin", "usr/", "usr/bin/", "usr/bin/ls = ls"},
	},
	{
		name:   "absolute symlink parent resolves with chroot semantics",
		layers: [][]E{{dir("usr"), dir("usr/lib"), symlink("lib", "/usr/lib")}, {file("lib/libc.so", "c")}},
		want:   []string{"lib -> /usr/lib", "usr/", "usr/lib/", "usr/lib/libc.so = c"},
	},
	{
		name:   "dotdot-heavy symlink stays inside the root",
		layers: [][]E{{symlink("up", "../../../../tmp")}, {file("up/x", "x")}},
		want:   []string{"tmp/", "tmp/x = x", "up -> ../../../../tmp"},
	},
	{
		name:   "missing parents are created",
		layers: [][]E{{file("a/b/c", "1")}},
		want:   []string{"a/", "a/b/", "a/b/c = 1"},
	},
	{
		name:   "leading ./ and / are stripped",
		layers: [][]E{{dir("./"), dir("./etc"), file("/etc/x", "1"), file("./etc/y", "2")}},
		want:   []string{"etc/", "etc/x = 1", "etc/y = 2"},
	},
	{
		name:   "devices and fifos",
		layers: [][]E{{dir("dev"), tartest.Char("dev/null", 1, 3), tartest.Block("dev/sda", 8, 0), tartest.Fifo("dev/fifo")}},
		want:   []string{"dev/", "dev/fifo p 0,0", "dev/null c 1,3", "dev/sda b 8,0"},
	},
	{
		name:   "PAX global header is ignored",
		layers: [][]E{{{Hdr: tar.Header{Typeflag: tar.TypeXGlobalHeader, Name: "pax_global_header", PAXRecords: map[string]string{"comment": "x"}}}, file("k", "k")}},
		want:   []string{"k = k"},
	},
	{
		name:   "TypeRegA is a regular file",
		layers: [][]E{{file("k", "k", tartest.Type('\x00'))}},
		want:   []string{"k = k"},
	},
	{
		name:    "name climbing above the root",
		layers:  [][]E{{file("../../etc/passwd", "x")}},
		wantErr: layerapply.ErrUnsafePath,
	},
	{
		name:    "whiteout naming dotdot",
		layers:  [][]E{{dir("a")}, {file("a/.wh...", "")}},
		wantErr: layerapply.ErrUnsafePath,
	},
	{
		name:    "whiteout naming dot",
		layers:  [][]E{{dir("a")}, {file("a/.wh..", "")}},
		wantErr: layerapply.ErrUnsafePath,
	},
	{
		name:    "whiteout under a symlink",
		layers:  [][]E{{dir("real"), file("real/x", "1"), symlink("ln", "real")}, {wh("ln/x")}},
		wantErr: layerapply.ErrUnsafePath,
	},
	{
		name:    "opaque under a symlink",
		layers:  [][]E{{dir("real"), file("real/x", "1"), symlink("ln", "real")}, {opq("ln")}},
		wantErr: layerapply.ErrUnsafePath,
	},
	{
		name:    "hard link leaving the root",
		layers:  [][]E{{link("passwd", "../../../../etc/passwd")}},
		wantErr: layerapply.ErrUnsafePath,
	},
	{
		name:    "hard link to a missing target",
		layers:  [][]E{{link("b", "nothing")}},
		wantErr: layerapply.ErrInvalidEntry,
	},
	{
		name:    "hard link to a directory",
		layers:  [][]E{{dir("d"), link("b", "d")}},
		wantErr: layerapply.ErrInvalidEntry,
	},
	{
		name:    "hard-linked whiteout",
		layers:  [][]E{{file("a", "1")}, {link(".wh.a", "a")}},
		wantErr: layerapply.ErrInvalidEntry,
	},
	{
		name:    "entry below a regular file",
		layers:  [][]E{{file("f", "1"), file("f/x", "2")}},
		wantErr: nil, // checked by the error text: not a directory
	},
}

func TestRules(t *testing.T) {
	for _, tc := range ruleCases {
		t.Run(tc.name, func(t *testing.T) {
			tars := layers(tc.layers...)
			for _, sink := range []struct {
				name string
				fn   func(*testing.T, [][]byte) ([]string, error)
			}{{"dir", applyDir}, {"tar", applyTar}} {
				got, err := sink.fn(t, tars)
				if tc.name == "entry below a regular file" {
					if err == nil || !strings.Contains(err.Error(), "not a directory") {
						t.Fatalf("%s: err = %v, want not a directory", sink.name, err)
					}
					continue
				}
				if tc.wantErr != nil {
					if !errors.Is(err, tc.wantErr) {
						t.Fatalf("%s: err = %v, want %v", sink.name, err, tc.wantErr)
					}
					var ee *layerapply.EntryError
					if !errors.As(err, &ee) || ee.Layer == "" || ee.Name == "" {
						t.Fatalf("%s: err %v does not name the layer and entry", sink.name, err)
					}
					continue
				}
				if err != nil {
					t.Fatalf("%s: %v", sink.name, err)
				}
				if d := treesnap.Diff(tc.want, got); d != "" {
					t.Errorf("%s sink: tree differs (-want +got):\n%s", sink.name, d)
				}
			}
		})
	}
}

func TestMain(m *testing.M) {
	os.Exit(m.Run())
}
