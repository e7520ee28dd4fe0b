package ext4writer

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"testing/iotest"
)

// TestReadFromInPlace writes the same bodies through ReadFrom, which reads them into the
// pending write buffer and writes them from there, and through one Write call each, which
// copies them: the images must be identical. The sizes cover empty, partial-block,
// block-sized, larger than the pending buffer, and bodies with zero blocks (holes) inside;
// a removal in the middle makes later bodies land in freed blocks, away from the pending
// data.
func TestReadFromInPlace(t *testing.T) {
	sizes := []int{0, 1, 4095, 4096, 4097, 3 * 4096, 100_000, 600_000, 1 << 20, 1<<20 + 4096 + 17, 3<<20 + 5}
	body := func(i, n int) []byte {
		b := randData(uint64(i+1), n)
		if n > 5*4096 {
			clear(b[4096 : 3*4096]) // a hole after the first block
		}
		return b
	}
	build := func(readFrom bool) []byte {
		name := filepath.Join(t.TempDir(), "img")
		f, err := os.Create(name)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		w, err := New(f)
		if err != nil {
			t.Fatal(err)
		}
		for round := range 2 {
			for i, n := range sizes {
				name := fmt.Sprintf("r%d-f%d", round, i)
				if err := w.Create(name, &File{Mode: 0o644, Size: int64(n)}); err != nil {
					t.Fatal(err)
				}
				b := body(i+round*100, n)
				if readFrom {
					if k, err := w.ReadFrom(iotest.HalfReader(bytes.NewReader(b))); err != nil || k != int64(n) {
						t.Fatalf("ReadFrom %s: %d, %v", name, k, err)
					}
				} else if _, err := w.Write(b); err != nil {
					t.Fatal(err)
				}
			}
			if round == 0 {
				for i := range sizes {
					if i%2 == 0 {
						if err := w.Remove(fmt.Sprintf("r0-f%d", i)); err != nil {
							t.Fatal(err)
						}
					}
				}
			}
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		img, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		return img
	}
	if a, b := build(true), build(false); !bytes.Equal(a, b) {
		t.Fatal("ReadFrom and Write made different images")
	}
}
