// Package ruletest holds the table of layer-merge rules that every sink must follow, so the
// same cases run against the directory, tar and ext4 outputs.
package ruletest

import (
	"archive/tar"

	"github.com/img2ext4/img2ext4/internal/tartest"
	"github.com/img2ext4/img2ext4/layerapply"
)

// E is one tar member.
type E = tartest.Entry

var (
	dir     = tartest.Dir
	file    = tartest.File
	symlink = tartest.Symlink
	link    = tartest.Link
	wh      = tartest.Whiteout
	opq     = tartest.Opaque
)

// Case is one rule: layers (bottom first) and either the merged tree in treesnap's short
// form, or the error Apply must give.
type Case struct {
	Name   string
	Layers [][]E
	Want   []string
	// WantErr is the sentinel the error must match; WantErrText a text it must contain.
	WantErr     error
	WantErrText string
}

// Tars encodes the case's layers.
func (c Case) Tars() [][]byte {
	out := make([][]byte, len(c.Layers))
	for i, l := range c.Layers {
		out[i] = tartest.Tar(l...)
	}
	return out
}

// Cases is the table of layer-merge rules.
var Cases = []Case{
	{
		Name:   "whiteout removes lower file",
		Layers: [][]E{{dir("a"), file("a/x", "1"), file("a/y", "2")}, {wh("a/x")}},
		Want:   []string{"a/", "a/y = 2"},
	},
	{
		Name:   "whiteout removes lower directory and everything below",
		Layers: [][]E{{dir("a"), dir("a/b"), file("a/b/c", "1"), file("k", "k")}, {wh("a")}},
		Want:   []string{"k = k"},
	},
	{
		Name:   "whiteout does not remove an entry of the same layer (whiteout after)",
		Layers: [][]E{{file("x", "old")}, {file("x", "new"), wh("x")}},
		Want:   []string{"x = new"},
	},
	{
		Name:   "whiteout does not remove an entry of the same layer (whiteout before)",
		Layers: [][]E{{file("x", "old")}, {wh("x"), file("x", "new")}},
		Want:   []string{"x = new"},
	},
	{
		Name: "whiteout of a directory keeps what the same layer wrote below it",
		Layers: [][]E{
			{dir("a"), file("a/old", "1")},
			{dir("a"), file("a/new", "2"), wh("a")},
		},
		Want: []string{"a/", "a/new = 2"},
	},
	{
		Name:   "whiteout of a missing name is a no-op",
		Layers: [][]E{{file("k", "k")}, {wh("nothing"), wh("no/such/dir")}},
		Want:   []string{"k = k"},
	},
	{
		Name:   "opaque hides lower children, marker first",
		Layers: [][]E{{dir("a"), file("a/x", "1"), dir("a/sub"), file("a/sub/y", "2")}, {dir("a"), opq("a"), file("a/z", "3")}},
		Want:   []string{"a/", "a/z = 3"},
	},
	{
		Name:   "opaque hides lower children, marker after new children",
		Layers: [][]E{{dir("a"), file("a/x", "1"), file("a/keep", "old")}, {dir("a"), file("a/z", "3"), file("a/keep", "new"), opq("a")}},
		Want:   []string{"a/", "a/keep = new", "a/z = 3"},
	},
	{
		Name:   "opaque keeps the directory itself",
		Layers: [][]E{{dir("a"), file("a/x", "1")}, {opq("a")}},
		Want:   []string{"a/"},
	},
	{
		Name:   "opaque on the root",
		Layers: [][]E{{file("x", "1"), dir("d")}, {opq("."), file("y", "2")}},
		Want:   []string{"y = 2"},
	},
	{
		Name:   "opaque in a single-layer image",
		Layers: [][]E{{dir("a"), opq("a"), file("a/x", "1")}},
		Want:   []string{"a/", "a/x = 1"},
	},
	{
		Name:   "AUFS metadata is skipped",
		Layers: [][]E{{dir(".wh..wh.plnk"), file(".wh..wh.plnk/123.456", "x"), file(".wh..wh.aufs", ""), file("k", "k")}},
		Want:   []string{"k = k"},
	},
	{
		Name:   "whiteout then directory re-created in a later layer",
		Layers: [][]E{{dir("a"), file("a/foo", "1"), dir("b"), file("b/bar", "2")}, {wh("a")}, {dir("a"), file("a/baz", "3")}},
		Want:   []string{"a/", "a/baz = 3", "b/", "b/bar = 2"},
	},
	{
		Name:   "directory over directory merges",
		Layers: [][]E{{dir("a"), file("a/x", "1")}, {dir("a", tartest.Mode(0o700)), file("a/y", "2")}},
		Want:   []string{"a/", "a/x = 1", "a/y = 2"},
	},
	{
		Name:   "file replaces directory",
		Layers: [][]E{{dir("a"), file("a/x", "1")}, {file("a", "file")}},
		Want:   []string{"a = file"},
	},
	{
		Name:   "directory replaces file",
		Layers: [][]E{{file("a", "file")}, {dir("a"), file("a/x", "1")}},
		Want:   []string{"a/", "a/x = 1"},
	},
	{
		Name:   "symlink replaces directory, directory replaces symlink",
		Layers: [][]E{{dir("a"), file("a/x", "1"), symlink("b", "a"), dir("t")}, {symlink("a", "t"), dir("b")}},
		Want:   []string{"a -> t", "b/", "t/"},
	},
	{
		Name:   "redundant whiteout under a file that replaced a directory",
		Layers: [][]E{{dir("foo"), file("foo/bar", "1")}, {file("foo", "f"), wh("foo/bar")}},
		Want:   []string{"foo = f"},
	},
	{
		Name:   "nested redundant whiteouts",
		Layers: [][]E{{dir("foo"), file("foo/bar", "1")}, {wh("foo"), wh("foo/bar")}},
		Want:   nil,
	},
	{
		Name:   "repeated entry: the last one wins",
		Layers: [][]E{{file("x", "first"), file("x", "second"), symlink("y", "a"), symlink("y", "b")}},
		Want:   []string{"x = second", "y -> b"},
	},
	{
		Name:   "hard link in the same layer",
		Layers: [][]E{{file("a", "data"), link("b", "a")}},
		Want:   []string{"a = data (link a)", "b = data (link a)"},
	},
	{
		Name:   "hard link to a file of an earlier layer",
		Layers: [][]E{{dir("usr"), file("usr/a", "data")}, {link("b", "usr/a")}},
		Want:   []string{"b = data (link b)", "usr/", "usr/a = data (link b)"},
	},
	{
		Name:   "hard link with an absolute target",
		Layers: [][]E{{dir("usr"), dir("usr/bin"), file("usr/bin/perl", "p"), link("usr/bin/perlbug", "/usr/bin/perl")}},
		Want:   []string{"usr/", "usr/bin/", "usr/bin/perl = p (link usr/bin/perl)", "usr/bin/perlbug = p (link usr/bin/perl)"},
	},
	{
		Name:   "hard link before its target",
		Layers: [][]E{{link("b", "a"), file("a", "data")}},
		Want:   []string{"a = data (link a)", "b = data (link a)"},
	},
	{
		Name:   "overwriting one name of a hard link leaves the other",
		Layers: [][]E{{file("a", "old"), link("b", "a")}, {file("a", "new")}},
		Want:   []string{"a = new", "b = old"},
	},
	{
		Name:   "link target removed in a later layer",
		Layers: [][]E{{file("a", "data"), link("b", "a")}, {wh("a")}},
		Want:   []string{"b = data"},
	},
	{
		Name:   "self-referencing hard link is ignored",
		Layers: [][]E{{file("a", "data"), link("a", "a")}},
		Want:   []string{"a = data"},
	},
	{
		Name:   "hard link to a symlink",
		Layers: [][]E{{symlink("s", "target"), link("h", "s")}},
		Want:   []string{"h -> target", "s -> target"},
	},
	{
		Name:   "merged-usr: write through relative symlinked parent",
		Layers: [][]E{{dir("usr"), dir("usr/bin"), symlink("bin", "usr/bin")}, {dir("bin"), file("bin/ls", "ls")}},
		Want:   []string{"bin/", "bin/ls = ls", "usr/", "usr/bin/"},
	},
	{
		Name:   "merged-usr: file below symlinked parent resolves inside",
		Layers: [][]E{{dir("usr"), dir("usr/bin"), symlink("bin", "usr/bin")}, {file("bin/ls", "ls")}},
		Want:   []string{"bin -> usr/bin", "usr/", "usr/bin/", "usr/bin/ls = ls"},
	},
	{
		Name:   "absolute symlink parent resolves with chroot semantics",
		Layers: [][]E{{dir("usr"), dir("usr/lib"), symlink("lib", "/usr/lib")}, {file("lib/libc.so", "c")}},
		Want:   []string{"lib -> /usr/lib", "usr/", "usr/lib/", "usr/lib/libc.so = c"},
	},
	{
		Name:   "dotdot-heavy symlink stays inside the root",
		Layers: [][]E{{symlink("up", "../../../../tmp")}, {file("up/x", "x")}},
		Want:   []string{"tmp/", "tmp/x = x", "up -> ../../../../tmp"},
	},
	{
		Name:   "missing parents are created",
		Layers: [][]E{{file("a/b/c", "1")}},
		Want:   []string{"a/", "a/b/", "a/b/c = 1"},
	},
	{
		Name:   "leading ./ and / are stripped",
		Layers: [][]E{{dir("./"), dir("./etc"), file("/etc/x", "1"), file("./etc/y", "2")}},
		Want:   []string{"etc/", "etc/x = 1", "etc/y = 2"},
	},
	{
		Name:   "devices and fifos",
		Layers: [][]E{{dir("dev"), tartest.Char("dev/null", 1, 3), tartest.Block("dev/sda", 8, 0), tartest.Fifo("dev/fifo")}},
		Want:   []string{"dev/", "dev/fifo p 0,0", "dev/null c 1,3", "dev/sda b 8,0"},
	},
	{
		Name:   "PAX global header is ignored",
		Layers: [][]E{{{Hdr: tar.Header{Typeflag: tar.TypeXGlobalHeader, Name: "pax_global_header", PAXRecords: map[string]string{"comment": "x"}}}, file("k", "k")}},
		Want:   []string{"k = k"},
	},
	{
		Name:   "TypeRegA is a regular file",
		Layers: [][]E{{file("k", "k", tartest.Type('\x00'))}},
		Want:   []string{"k = k"},
	},
	{
		Name:    "name climbing above the root",
		Layers:  [][]E{{file("../../etc/passwd", "x")}},
		WantErr: layerapply.ErrUnsafePath,
	},
	{
		Name:    "whiteout naming dotdot",
		Layers:  [][]E{{dir("a")}, {file("a/.wh...", "")}},
		WantErr: layerapply.ErrUnsafePath,
	},
	{
		Name:    "whiteout naming dot",
		Layers:  [][]E{{dir("a")}, {file("a/.wh..", "")}},
		WantErr: layerapply.ErrUnsafePath,
	},
	{
		Name:    "whiteout under a symlink",
		Layers:  [][]E{{dir("real"), file("real/x", "1"), symlink("ln", "real")}, {wh("ln/x")}},
		WantErr: layerapply.ErrUnsafePath,
	},
	{
		Name:    "opaque under a symlink",
		Layers:  [][]E{{dir("real"), file("real/x", "1"), symlink("ln", "real")}, {opq("ln")}},
		WantErr: layerapply.ErrUnsafePath,
	},
	{
		Name:    "hard link leaving the root",
		Layers:  [][]E{{link("passwd", "../../../../etc/passwd")}},
		WantErr: layerapply.ErrUnsafePath,
	},
	{
		Name:    "hard link to a missing target",
		Layers:  [][]E{{link("b", "nothing")}},
		WantErr: layerapply.ErrInvalidEntry,
	},
	{
		Name:    "hard link to a directory",
		Layers:  [][]E{{dir("d"), link("b", "d")}},
		WantErr: layerapply.ErrInvalidEntry,
	},
	{
		Name:    "hard link replacing the directory that holds its target",
		Layers:  [][]E{{dir("a"), file("a/x", "1")}, {link("a", "a/x")}},
		WantErr: layerapply.ErrInvalidEntry,
	},
	{
		Name:    "hard-linked whiteout",
		Layers:  [][]E{{file("a", "1")}, {link(".wh.a", "a")}},
		WantErr: layerapply.ErrInvalidEntry,
	},
	{
		Name:        "entry below a regular file",
		Layers:      [][]E{{file("f", "1"), file("f/x", "2")}},
		WantErrText: "not a directory",
	},
}
