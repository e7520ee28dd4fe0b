package whiteout

import (
	"io/fs"
	"path"
	"strings"
	"testing"
)

func TestClassify(t *testing.T) {
	cases := []struct {
		name   string
		kind   Kind
		target string
	}{
		{"etc/passwd", None, "etc/passwd"},
		{"etc/.wh.passwd", File, "etc/passwd"},
		{".wh.etc", File, "etc"},
		{"a/b/.wh..hidden", File, "a/b/.hidden"},
		{"a/.wh..wh..opq", Opaque, "a"},
		{".wh..wh..opq", Opaque, "."},
		{".wh..wh.plnk", Meta, ".wh..wh.plnk"},
		{".wh..wh.plnk/12.34", Meta, ".wh..wh.plnk/12.34"},
		{".wh..wh.aufs", Meta, ".wh..wh.aufs"},
		{"a/.wh..wh.orph/x", Meta, "a/.wh..wh.orph/x"},
		{"a/.wh.", Invalid, "a/.wh."},
		{"a/.wh..", Invalid, "a/.wh.."},
		{"a/.wh...", Invalid, "a/.wh..."},
		{"x.wh.y", None, "x.wh.y"},
		{"a/.wh", None, "a/.wh"},
	}
	for _, tc := range cases {
		k, target := Classify(tc.name)
		if k != tc.kind || target != tc.target {
			t.Errorf("Classify(%q) = %v, %q; want %v, %q", tc.name, k, target, tc.kind, tc.target)
		}
	}
}

func TestKindString(t *testing.T) {
	for k, want := range map[Kind]string{None: "none", File: "whiteout", Opaque: "opaque", Meta: "aufs-meta", Invalid: "invalid", Kind(99): "unknown"} {
		if k.String() != want {
			t.Errorf("%d.String() = %q", k, k.String())
		}
	}
}

// specKind classifies name the way the OCI image spec (image-spec layer.md, "Whiteouts")
// and the AUFS conventions it comes from describe it, written from that text and not from
// Classify, looking at the path one element at a time:
//
//   - a base name ".wh..wh..opq" is an opaque whiteout of its directory;
//   - any other element starting ".wh..wh." is AUFS bookkeeping (".wh..wh.plnk",
//     ".wh..wh.aufs", ".wh..wh.orph"), and so is everything below such a directory;
//   - a base name ".wh." + X deletes the sibling X; X must name a sibling, so an empty
//     X, "." or ".." (or a NUL byte, which no path holds) is not a whiteout anyone can apply;
//   - everything else is an ordinary entry, whatever its directories are called.
func specKind(name string) (Kind, string) {
	elems := strings.Split(name, "/")
	last := len(elems) - 1
	for i, e := range elems {
		if i < last && len(e) >= 8 && e[:8] == ".wh..wh." {
			return Meta, name
		}
	}
	dir := "."
	if last > 0 {
		dir = strings.Join(elems[:last], "/")
	}
	base := elems[last]
	switch {
	case base == ".wh..wh..opq":
		return Opaque, dir
	case len(base) >= 8 && base[:8] == ".wh..wh.":
		return Meta, name
	case len(base) >= 4 && base[:4] == ".wh.":
		x := base[4:]
		if x == "" || x == "." || x == ".." || strings.IndexByte(x, 0) >= 0 {
			return Invalid, name
		}
		if dir == "." {
			return File, x
		}
		return File, dir + "/" + x
	}
	return None, name
}

// FuzzClassify compares Classify with specKind on every clean name (the inputs Classify
// is specified for), and checks that a whiteout never names anything outside its own
// directory and that its name is ".wh." + the target's base name beside the target.
func FuzzClassify(f *testing.F) {
	for _, s := range []string{"a/.wh.b", ".wh..wh..opq", "a/.wh...", ".wh..wh.plnk/x", "x", "a/b/.wh..wh..opq", ".wh./",
		".wh..wh..opq/x", "a/.wh.b/c", ".wh.", ".wh.\x00", "a/.wh..wh.", "a/.wh..wh", "a/.wh.é", ".wh..wh..opqx", "a/.wh..wh..opq/.wh.x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		if !fs.ValidPath(name) {
			return // Classify's contract: names are already clean
		}
		k, target := Classify(name)
		if wk, wt := specKind(name); k != wk || target != wt {
			t.Fatalf("Classify(%q) = %v %q, the spec says %v %q", name, k, target, wk, wt)
		}
		dir := path.Dir(name)
		switch k {
		case File:
			if path.Dir(target) != dir || path.Base(target) == ".." || path.Base(target) == "." {
				t.Fatalf("Classify(%q) = File %q: leaves directory %q", name, target, dir)
			}
			if path.Join(dir, Prefix+path.Base(target)) != name {
				t.Fatalf("Classify(%q) = File %q: not the whiteout of its target", name, target)
			}
		case Opaque:
			if target != dir {
				t.Fatalf("Classify(%q) = Opaque %q, want %q", name, target, dir)
			}
		default:
			if target != name {
				t.Fatalf("Classify(%q) = %v %q, want the name back", name, k, target)
			}
		}
	})
}
