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
