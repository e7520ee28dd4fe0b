package ext4writer

import (
	"fmt"
	"io/fs"
	"strings"
	"testing"

	"github.com/img2ext4/img2ext4/ext4writer/internal/disk"
)

// TestArenaNames checks that names taken from the arena keep their bytes when later names
// fill their chunk and start new ones, a name longer than a chunk included.
func TestArenaNames(t *testing.T) {
	var a arenas
	var got, want []string
	for i := range 5000 {
		s := fmt.Sprintf("file-%06d", i)
		if i%1000 == 999 {
			s = strings.Repeat("x", nameChunk+i)
		}
		want = append(want, s)
		got = append(got, a.name(s))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("name %d: got %.20q, want %.20q", i, got[i], want[i])
		}
	}
}

// TestArenaExtents checks that the one-extent lists of two inodes taken one after the
// other do not share memory: an append to the first moves it out of its slot.
func TestArenaExtents(t *testing.T) {
	var a arenas
	x, y := a.extent(), a.extent()
	x = append(x, disk.Extent{Start: 1, Len: 1})
	y = append(y, disk.Extent{Start: 2, Len: 1})
	x = append(x, disk.Extent{Start: 3, Len: 1})
	if len(x) != 2 || x[0].Start != 1 || x[1].Start != 3 || len(y) != 1 || y[0].Start != 2 {
		t.Fatalf("x %v, y %v", x, y)
	}
}

// TestCreateAllocs checks that an entry's inode, name and first extent come from the
// arenas: creating an empty file or a small one allocates well under once per entry (the
// directory's map growing is what is left).
func TestCreateAllocs(t *testing.T) {
	w, err := New(nopWriterAt{})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Create("d", &File{Mode: fs.ModeDir | 0o755}); err != nil {
		t.Fatal(err)
	}
	names := make([]string, 20000)
	for i := range names {
		names[i] = fmt.Sprintf("d/file-%06d", i)
	}
	body := []byte("#!/bin/sh\n")
	for _, size := range []int{0, len(body)} {
		i := 0
		allocs := testing.AllocsPerRun(len(names)/2-1, func() {
			if err := w.Create(names[i], &File{Mode: 0o644, Size: int64(size)}); err != nil {
				t.Fatal(err)
			}
			if _, err := w.Write(body[:size]); err != nil {
				t.Fatal(err)
			}
			i++
		})
		names = names[i:]
		if allocs > 0.5 {
			t.Errorf("size %d: %.2f allocations per Create, want <= 0.5", size, allocs)
		}
	}
}
