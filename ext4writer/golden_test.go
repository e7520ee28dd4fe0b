package ext4writer

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/golden")

// TestGolden pins the exact bytes of a fixed image. Run with -update to
// accept a deliberate format change; a mismatch leaves the image as
// testdata/golden/NAME.got for inspection.
func TestGolden(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []Option
	}{
		{"alltypes", nil},
		{"alltypes-legacy", []Option{WithLegacy(), WithLabel("legacy"), WithSeed("other")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img := buildImage(t, allTypes(), tc.opts...)
			data, err := os.ReadFile(img)
			if err != nil {
				t.Fatal(err)
			}
			sum := sha256.Sum256(data)
			got := hex.EncodeToString(sum[:]) + "\n"
			golden := filepath.Join("testdata", "golden", tc.name+".sha256")
			if *update {
				if err := os.MkdirAll(filepath.Dir(golden), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create)", err)
			}
			if strings.TrimSpace(string(want)) != strings.TrimSpace(got) {
				gotPath := strings.TrimSuffix(golden, ".sha256") + ".got"
				if err := os.WriteFile(gotPath, data, 0o644); err != nil {
					t.Fatal(err)
				}
				t.Errorf("image digest %s, want %s; image written to %s", strings.TrimSpace(got), strings.TrimSpace(string(want)), gotPath)
			}
		})
	}
}

// TestDeterministic checks that the same calls give the same bytes, and
// that MinSize does not disturb the result.
func TestDeterministic(t *testing.T) {
	build := func(probe bool) []byte {
		var b writerAtBuf
		w, err := New(&b)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range allTypes() {
			if err := addEntry(w, e); err != nil {
				t.Fatal(err)
			}
			if probe {
				if _, err := w.MinSize(); err != nil {
					t.Fatal(err)
				}
			}
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		return b.b
	}
	a, b, c := build(false), build(false), build(true)
	if !bytes.Equal(a, b) {
		t.Error("two identical runs differ")
	}
	if !bytes.Equal(a, c) {
		t.Error("calling MinSize changed the image")
	}
}

// TestMinSizeThenChange checks that a directory changed after MinSize laid it out is laid
// out again by Close: children removed, added, replaced and linked after a MinSize give the
// image that the same calls give without it, byte for byte.
func TestMinSizeThenChange(t *testing.T) {
	type op func(w *Writer) error
	create := func(name string, f File) op { return func(w *Writer) error { return w.Create(name, &f) } }
	remove := func(name string) op { return func(w *Writer) error { return w.Remove(name) } }
	link := func(old, name string) op { return func(w *Writer) error { return w.Link(old, name) } }
	file := File{Mode: 0o644}
	// Each kind of change is the last to touch a directory of its own.
	ops := []op{
		create("r", File{Mode: fs.ModeDir | 0o755}), // removals
		create("r/a", file), create("r/b", file), create("r/s", File{Mode: fs.ModeDir | 0o755}),
		create("l", File{Mode: fs.ModeDir | 0o755}), // links
		create("l/a", file),
		create("c", File{Mode: fs.ModeDir | 0o755}), // additions and replacements
		create("c/a", file),
		remove("r/a"),
		link("l/a", "l/b"),
		create("c/a", File{Mode: fs.ModeSymlink | 0o777, Linkname: "b"}),
		create("c/d", file),
		remove("r/s"),
		link("c/d", "l/c"),
	}
	build := func(probeAfter int) []byte {
		var b writerAtBuf
		w, err := New(&b)
		if err != nil {
			t.Fatal(err)
		}
		for i, o := range ops {
			if err := o(w); err != nil {
				t.Fatal(err)
			}
			if i == probeAfter {
				if _, err := w.MinSize(); err != nil {
					t.Fatal(err)
				}
			}
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		return b.b
	}
	want := build(-1)
	for _, i := range []int{7, 10} { // a MinSize once the directories hold children, and midway
		if got := build(i); !bytes.Equal(got, want) {
			t.Errorf("MinSize after call %d changed the image", i)
		}
	}
}

// writerAtBuf is an in-memory io.WriterAt.
type writerAtBuf struct{ b []byte }

func (w *writerAtBuf) WriteAt(p []byte, off int64) (int, error) {
	if end := off + int64(len(p)); end > int64(len(w.b)) {
		w.b = append(w.b, make([]byte, end-int64(len(w.b)))...)
	}
	copy(w.b[off:], p)
	return len(p), nil
}
