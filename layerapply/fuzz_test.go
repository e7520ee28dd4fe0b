package layerapply_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/img2ext4/img2ext4/internal/ruletest"
	"github.com/img2ext4/img2ext4/internal/tartest"
	"github.com/img2ext4/img2ext4/layerapply"
)

// FuzzApply feeds arbitrary bytes as a layer on top of a fixed lower layer: Apply may refuse
// them, but must not panic, must respect its limits, and must never touch anything outside
// the destination.
func FuzzApply(f *testing.F) {
	for _, tc := range ruletest.Cases {
		for _, l := range tc.Tars() {
			f.Add(l)
		}
	}
	f.Add([]byte{})
	f.Add(bytes.Repeat([]byte{0}, 1024))
	lower := tartest.Tar(tartest.Dir("a"), tartest.File("a/x", "1"), tartest.Symlink("up", "../.."),
		tartest.Symlink("abs", "/"), tartest.Dir("d"), tartest.File("d/f", "2"), tartest.Link("h", "a/x"))
	lim := layerapply.WithLimits(layerapply.Limits{Entries: 2000, Bytes: 16 << 20, PathLen: 1024, XattrBytes: 4096})
	f.Fuzz(func(t *testing.T, data []byte) {
		tmp := t.TempDir()
		outside := filepath.Join(tmp, "outside")
		os.Mkdir(outside, 0o755)
		os.WriteFile(filepath.Join(outside, "sentinel"), []byte("keep"), 0o644)
		img := imageOf(t,
			&rawLayer{blob: lower, diffID: hashOf(lower)},
			&rawLayer{blob: data, diffID: hashOf(data)})

		d, err := layerapply.NewDir(filepath.Join(tmp, "root"))
		if err != nil {
			t.Fatal(err)
		}
		err = layerapply.Apply(context.Background(), d, img, lim)
		if err == nil {
			d.Close()
		} else {
			d.Abort()
		}
		var buf bytes.Buffer
		ts, _ := layerapply.NewTar(&buf, tmp)
		if layerapply.Apply(context.Background(), ts, img, lim) == nil {
			if err := ts.Close(); err != nil {
				t.Fatalf("tar sink close after a clean apply: %v", err)
			}
		} else {
			ts.Abort()
		}

		entries, _ := os.ReadDir(tmp)
		for _, e := range entries {
			if e.Name() != "outside" && e.Name() != "root" {
				t.Fatalf("apply created %s beside the destination", e.Name())
			}
		}
		got, _ := os.ReadDir(outside)
		b, _ := os.ReadFile(filepath.Join(outside, "sentinel"))
		if len(got) != 1 || string(b) != "keep" {
			t.Fatalf("outside changed: %v %q", got, b)
		}
	})
}
