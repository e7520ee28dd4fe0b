package ext4writer

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"flag"
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

// writerAtBuf is an in-memory io.WriterAt.
type writerAtBuf struct{ b []byte }

func (w *writerAtBuf) WriteAt(p []byte, off int64) (int, error) {
	if end := off + int64(len(p)); end > int64(len(w.b)) {
		w.b = append(w.b, make([]byte, end-int64(len(w.b)))...)
	}
	copy(w.b[off:], p)
	return len(p), nil
}
