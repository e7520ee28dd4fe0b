package ext4writer

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
)

// memWriterAt is an in-memory destination without Truncate, hole
// punching or ZeroRange: freed blocks must get zeros written.
type memWriterAt struct{ b []byte }

func (m *memWriterAt) WriteAt(p []byte, off int64) (int, error) {
	if end := int(off) + len(p); end > len(m.b) {
		m.b = append(m.b, make([]byte, end-len(m.b))...)
	}
	return copy(m.b[off:], p), nil
}

// zeroRanger is a memWriterAt with ZeroRange, as a block device has.
type zeroRanger struct {
	memWriterAt
	calls int
}

func (z *zeroRanger) ZeroRange(off, n int64) error {
	z.calls++
	_, err := z.WriteAt(make([]byte, n), off)
	return err
}

// markerBody is n bytes of numbered lines holding marker.
func markerBody(marker string, n int) []byte {
	var b bytes.Buffer
	for i := 0; b.Len() < n; i++ {
		fmt.Fprintf(&b, "%s line %d\n", marker, i)
	}
	return b.Bytes()[:n]
}

// TestNoDeletedData removes and replaces files whose bodies hold a
// marker: no copy of it may stay in the image's free blocks, whatever
// the destination (a regular file gets holes punched, a ZeroRanger is
// asked, anything else gets zeros written).
func TestNoDeletedData(t *testing.T) {
	needTools(t)
	const marker = "SECRET-7f3a9c"
	ents := []entry{
		{name: "secret", mode: 0o644, data: markerBody(marker, 2<<20)},
		{name: "keep", mode: 0o644, data: randData(1, 1<<20)},
		{name: "replaced", mode: 0o644, data: markerBody(marker, 300<<10)},
		{name: "linked", mode: 0o644, data: markerBody(marker, 100<<10)},
		{name: "link2", hardlink: "linked"},
		{name: "d", mode: 0o755 | os.ModeDir},
		{name: "d/deep", mode: 0o644, data: markerBody(marker, 50<<10)},
		{name: "secret", remove: true},
		{name: "replaced", mode: 0o644, data: []byte("short now")},
		{name: "linked", remove: true},
		{name: "link2", remove: true},
		{name: "d", remove: true},
		{name: "after", mode: 0o644, data: randData(2, 512<<10)}, // reuses some freed blocks
	}
	for _, dest := range []string{"file", "memory", "zeroranger"} {
		t.Run(dest, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "img")
			var f interface {
				WriteAt([]byte, int64) (int, error)
			}
			var zr *zeroRanger
			switch dest {
			case "file":
				of, err := os.Create(path)
				if err != nil {
					t.Fatal(err)
				}
				defer of.Close()
				f = of
			case "memory":
				f = &memWriterAt{}
			case "zeroranger":
				zr = &zeroRanger{}
				f = zr
			}
			writeEntries(t, f, ents, WithFreeSpace(0))
			switch m := f.(type) {
			case *memWriterAt:
				if err := os.WriteFile(path, m.b, 0o644); err != nil {
					t.Fatal(err)
				}
			case *zeroRanger:
				if err := os.WriteFile(path, m.b, 0o644); err != nil {
					t.Fatal(err)
				}
				if m.calls == 0 {
					t.Error("ZeroRange never called")
				}
			}
			img, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if n := bytes.Count(img, []byte(marker)); n > 0 {
				t.Errorf("the image holds %d copies of the deleted marker", n)
			}
			fsck(t, path)
			if dest == "file" {
				var st syscall.Stat_t
				if err := syscall.Stat(path, &st); err != nil {
					t.Fatal(err)
				}
				// 1.5 MiB of live data plus metadata and the journal's first block:
				// the freed 2.4 MiB are holes
				if alloc := st.Blocks * 512; alloc > 4<<20 {
					t.Errorf("%d bytes allocated: freed blocks were not punched", alloc)
				}
			}
			out := debugfs(t, path, "cat /replaced")
			if !strings.Contains(out, "short now") {
				t.Errorf("replaced file reads %q", out)
			}
		})
	}
}

// TestRunSet checks add and remove against a bitmap.
func TestRunSet(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 3))
	for iter := range 300 {
		var s runSet
		model := make([]bool, 320)
		for range 40 {
			a := run{r.Uint64N(250), 1 + r.Uint64N(40)}
			add := r.IntN(2) == 0
			if add {
				s.add(a)
			} else {
				s.remove(a)
			}
			for b := a.start; b < a.start+a.n; b++ {
				model[b] = add
			}
			got := make([]bool, len(model))
			for i, x := range s {
				if x.n == 0 || i > 0 && s[i-1].start+s[i-1].n >= x.start {
					t.Fatalf("iteration %d: runs %v not sorted, non-empty and apart", iter, s)
				}
				for b := x.start; b < x.start+x.n; b++ {
					got[b] = true
				}
			}
			if !slices.Equal(got, model) {
				t.Fatalf("iteration %d: after %v %v the set is %v", iter, map[bool]string{true: "add", false: "remove"}[add], a, s)
			}
		}
	}
}
