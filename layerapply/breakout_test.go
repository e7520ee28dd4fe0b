package layerapply_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/img2ext4/img2ext4/internal/tartest"
	"github.com/img2ext4/img2ext4/internal/treesnap"
	"github.com/img2ext4/img2ext4/layerapply"
)

// TestBreakouts applies hostile layers into root/ beside a sibling directory outside/ and
// checks, for every case, that the result is either a clear error or a safe tree, and that
// nothing outside root changed. The sibling's absolute path is baked into some layers, as an
// attacker who knows the destination would do.
func TestBreakouts(t *testing.T) {
	type tc struct {
		name   string
		layers func(outside string) [][]E
		// want is the tree inside root for a safe result; nil with wantErr set means an error.
		want    []string
		wantErr bool
	}
	cases := []tc{
		{name: "dotdot name", wantErr: true, layers: func(string) [][]E {
			return [][]E{{file("../outside/pwned", "x")}}
		}},
		{name: "dotdot deep inside name", wantErr: true, layers: func(string) [][]E {
			return [][]E{{dir("a"), file("a/../../outside/pwned", "x")}}
		}},
		{name: "absolute name stays inside", layers: func(o string) [][]E {
			return [][]E{{file(o+"/pwned", "x")}}
		}, want: nil},
		{name: "relative symlink then write through it", layers: func(string) [][]E {
			return [][]E{{symlink("esc", "../outside"), file("esc/pwned", "x")}}
		}, want: []string{"esc -> ../outside", "outside/", "outside/pwned = x"}},
		{name: "absolute symlink then write through it, later layer", layers: func(o string) [][]E {
			return [][]E{{symlink("esc", o)}, {file("esc/pwned", "x")}}
		}},
		{name: "symlink to outside file then overwrite the symlink", layers: func(o string) [][]E {
			return [][]E{{symlink("sentinel", o+"/sentinel")}, {file("sentinel", "x")}}
		}, want: []string{"sentinel = x"}},
		{name: "symlink chain to outside then mkdir through it", layers: func(string) [][]E {
			return [][]E{{symlink("a", "b"), symlink("b", "../../outside"), dir("a/newdir", tartest.Mode(0o777))}}
		}, want: []string{"a -> b", "b -> ../../outside", "outside/", "outside/newdir/"}},
		{name: "directory entry replaces symlink to outside", layers: func(string) [][]E {
			return [][]E{{symlink("d", "../outside")}, {dir("d", tartest.Mode(0o777))}}
		}, want: []string{"d/"}},
		{name: "hard link out of the root", wantErr: true, layers: func(string) [][]E {
			return [][]E{{link("pw", "../outside/sentinel")}}
		}},
		{name: "hard link with absolute outside path resolves inside and fails", wantErr: true, layers: func(o string) [][]E {
			return [][]E{{link("pw", o+"/sentinel")}}
		}},
		{name: "hard link through symlinked parent to outside", wantErr: true, layers: func(string) [][]E {
			return [][]E{{symlink("esc", "../outside"), link("pw", "esc/sentinel")}}
		}},
		{name: "hard link to a symlink pointing outside links the symlink", layers: func(o string) [][]E {
			return [][]E{{symlink("s", o+"/sentinel"), link("h", "s")}}
		}, want: []string{"h -> " + "OUT/sentinel", "s -> " + "OUT/sentinel"}},
		{name: "whiteout escaping with dotdot", wantErr: true, layers: func(string) [][]E {
			return [][]E{{file("k", "k")}, {file(".wh...", "")}}
		}},
		{name: "whiteout of a parent via dotdot name", wantErr: true, layers: func(string) [][]E {
			return [][]E{{dir("a")}, {file("a/../../.wh.outside", "")}}
		}},
		{name: "whiteout through symlink", wantErr: true, layers: func(string) [][]E {
			return [][]E{{symlink("esc", "../outside")}, {file("esc/.wh.sentinel", "")}}
		}},
		{name: "opaque through symlink", wantErr: true, layers: func(string) [][]E {
			return [][]E{{symlink("esc", "../outside")}, {file("esc/.wh..wh..opq", "")}}
		}},
		{name: "whiteout of a symlink removes only the link", layers: func(o string) [][]E {
			return [][]E{{symlink("esc", o)}, {wh("esc")}}
		}, want: nil},
		{name: "dangling absolute symlink parent is created inside", layers: func(string) [][]E {
			return [][]E{{symlink("a", "/nonexistent/dir"), file("a/b", "x")}}
		}, want: []string{"a -> /nonexistent/dir", "nonexistent/", "nonexistent/dir/", "nonexistent/dir/b = x"}},
		{name: "symlink loop", wantErr: true, layers: func(string) [][]E {
			return [][]E{{symlink("a", "b"), symlink("b", "a"), file("a/x", "x")}}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tmp := t.TempDir()
			root := filepath.Join(tmp, "root")
			outside := filepath.Join(tmp, "outside")
			if err := os.Mkdir(outside, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(outside, "sentinel"), []byte("keep"), 0o644); err != nil {
				t.Fatal(err)
			}
			before, err := treesnap.Dir(tmp, treesnap.Options{})
			if err != nil {
				t.Fatal(err)
			}
			tars := layers(c.layers(outside)...)
			d, err := layerapply.NewDir(root)
			if err != nil {
				t.Fatal(err)
			}
			err = layerapply.Apply(context.Background(), d, tartest.Image(tars...))
			if cerr := d.Close(); err == nil {
				err = cerr
			}
			if c.wantErr != (err != nil) {
				t.Fatalf("err = %v, wantErr %v", err, c.wantErr)
			}
			after, err := treesnap.Dir(outside, treesnap.Options{})
			if err != nil {
				t.Fatal(err)
			}
			var beforeOutside []treesnap.Entry
			for _, e := range before {
				if e.Path == "outside" || len(e.Path) > 8 && e.Path[:8] == "outside/" {
					e.Path = e.Path[len("outside"):]
					if e.Path == "" {
						continue
					}
					e.Path = e.Path[1:]
					beforeOutside = append(beforeOutside, e)
				}
			}
			if d := treesnap.Diff(treesnap.Lines(beforeOutside), treesnap.Lines(after)); d != "" {
				t.Fatalf("outside changed:\n%s", d)
			}
			if c.wantErr {
				return
			}
			if c.want == nil && c.name != "absolute name stays inside" && c.name != "whiteout of a symlink removes only the link" {
				return // only that nothing escaped
			}
			got, err := treesnap.Dir(root, treesnap.Options{NoXattrs: true})
			if err != nil {
				t.Fatal(err)
			}
			lines := treesnap.ShortLines(got)
			want := c.want
			if c.name == "absolute name stays inside" {
				// The absolute name lands at the same path below root.
				rel := outside[1:]
				want = nil
				for i := range rel {
					if rel[i] == '/' {
						want = append(want, rel[:i]+"/")
					}
				}
				want = append(want, rel+"/", rel+"/pwned = x")
			}
			for i := range want {
				want[i] = replaceOut(want[i], outside)
			}
			if d := treesnap.Diff(want, lines); d != "" {
				t.Errorf("tree differs (-want +got):\n%s", d)
			}
		})
	}
}

func replaceOut(s, outside string) string {
	for i := 0; i+3 <= len(s); i++ {
		if s[i:i+3] == "OUT" {
			return s[:i] + outside + s[i+3:]
		}
	}
	return s
}
