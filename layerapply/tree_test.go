package layerapply

import (
	"path"
	"strings"
	"testing"
)

// slowClean is cleanName without its fast path: the reference the fast path must agree with.
func slowClean(raw string) (string, bool) {
	if raw == "" || strings.IndexByte(raw, 0) >= 0 {
		return "", false
	}
	rel := path.Clean(strings.TrimLeft(raw, "/"))
	if rel == ".." || strings.HasPrefix(rel, "../") {
		return "", false
	}
	p := path.Clean("/" + raw)
	if p == "/" {
		return ".", true
	}
	return p[1:], true
}

func FuzzCleanName(f *testing.F) {
	for _, s := range []string{"usr/bin/ls", "usr/bin/", "./", "/", ".", "..", "../x", "a/../../b", "a//b", "/etc/passwd", "a/./b", "\xff/x", "a/b/.."} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		got, err := cleanName(raw)
		want, ok := slowClean(raw)
		if (err == nil) != ok || got != want {
			t.Fatalf("cleanName(%q) = %q, %v; want %q, ok=%v", raw, got, err, want, ok)
		}
	})
}

func TestNodeAt(t *testing.T) {
	root := &node{typ: '5'}
	a := &node{name: "a", typ: '5'}
	root.add(a)
	b := &node{name: "b", typ: '5'}
	a.add(b)
	for _, c := range []struct {
		n    *node
		p    string
		want bool
	}{
		{root, "", true}, {root, ".", true}, {root, "a", false},
		{a, "a", true}, {a, "b", false}, {a, "", false}, {a, "x/a", false},
		{b, "a/b", true}, {b, "b", false}, {b, "x/b", false}, {b, "a/b/c", false},
	} {
		if got := c.n.at(c.p); got != c.want {
			t.Errorf("%s.at(%q) = %v, want %v", c.n.path(), c.p, got, c.want)
		}
	}
}
