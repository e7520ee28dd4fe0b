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

// FuzzClassify checks that a whiteout never names anything outside its own directory.
func FuzzClassify(f *testing.F) {
	for _, s := range []string{"a/.wh.b", ".wh..wh..opq", "a/.wh...", ".wh..wh.plnk/x", "x", "a/b/.wh..wh..opq", ".wh./"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		if !fs.ValidPath(name) {
			return // Classify's contract: names are already clean
		}
		k, target := Classify(name)
		dir := path.Dir(name)
		switch k {
		case File:
			if path.Dir(target) != dir || path.Base(target) == ".." || path.Base(target) == "." {
				t.Fatalf("Classify(%q) = File %q: leaves directory %q", name, target, dir)
			}
			if strings.HasPrefix(path.Base(target), "/") {
				t.Fatalf("bad target %q", target)
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
