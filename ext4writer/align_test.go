package ext4writer

import (
	"os"
	"path/filepath"
	"testing"
)

// TestAlign checks that a computed size is rounded up to WithAlign's multiple, the extra
// blocks free, and that a fixed size is left alone.
func TestAlign(t *testing.T) {
	for _, tc := range []struct {
		name  string
		opts  []Option
		check func(size, unaligned int64) bool
	}{
		{"computed, 1 MiB", []Option{WithAlign(1 << 20)}, func(size, unaligned int64) bool {
			return size%(1<<20) == 0 && size >= unaligned && size-unaligned < 1<<20
		}},
		{"fixed size wins", []Option{WithAlign(1 << 20), WithSize(8<<20 + 4096)}, func(size, _ int64) bool { return size == 8<<20+4096 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			build := func(opts ...Option) int64 {
				f, err := os.Create(filepath.Join(t.TempDir(), "img"))
				if err != nil {
					t.Fatal(err)
				}
				defer f.Close()
				w, err := New(f, opts...)
				if err != nil {
					t.Fatal(err)
				}
				if err := w.Create("f", &File{Mode: 0o644, Size: 5}); err != nil {
					t.Fatal(err)
				}
				if _, err := w.Write([]byte("hello")); err != nil {
					t.Fatal(err)
				}
				if err := w.Close(); err != nil {
					t.Fatal(err)
				}
				fsck(t, f.Name())
				return w.Stats().Size
			}
			unaligned := build()
			if size := build(tc.opts...); !tc.check(size, unaligned) {
				t.Errorf("size %d (unaligned %d)", size, unaligned)
			}
		})
	}
	if _, err := New(nopWriterAt{}, WithAlign(3000)); err == nil {
		t.Error("WithAlign(3000) accepted")
	}
}
