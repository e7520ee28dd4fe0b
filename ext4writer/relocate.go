package ext4writer

import (
	"io"

	"github.com/img2ext4/img2ext4/ext4writer/internal/disk"
)

// relocate moves the file blocks that lie where groups of bpg blocks
// would keep superblock backups (1+gdtRes blocks each) to blocks above
// the cursor, reading them back from the destination. It reports
// whether it did; it cannot when the destination is no io.ReaderAt.
// The blocks it moves from are freed (and zeroed at Close).
func (w *Writer) relocate(inodes []*inode, bpg, gdtRes uint64) bool {
	ra, ok := w.f.(io.ReaderAt)
	if !ok || w.overflow || w.flush() != nil {
		return false
	}
	inNew := func(b uint64) bool {
		g := b / bpg
		return g > 0 && hasBackup(g) && b < g*bpg+1+gdtRes
	}
	var busy runSet
	for g := uint64(1); g*bpg < w.alloc.cursor; g = nextBackup(g) {
		for b := g * bpg; b < g*bpg+1+gdtRes; b++ {
			if !w.alloc.isFree(b) {
				busy.add(run{b, 1})
			}
		}
	}
	n := uint64(0)
	for _, r := range busy {
		n += r.n
	}
	// room above the cursor for them and the backups skipped on the way
	if n == 0 || w.alloc.cursor+2*n+2*bpg > w.alloc.limit {
		return false
	}
	// where the moved blocks go: above the cursor, outside the backups
	// of either geometry; the new geometry's skipped on the way are
	// freed at the end (the old one's stay reserved, as in the allocator)
	var skipped runSet
	next := func() uint64 {
		for {
			b := w.alloc.cursor
			if e := w.alloc.skipEnd(b); e != b {
				w.alloc.cursor = e
				continue
			}
			w.alloc.cursor++
			if inNew(b) {
				skipped.add(run{b, 1})
				continue
			}
			return b
		}
	}
	buf := make([]byte, blockSize)
	for _, in := range inodes {
		if in == nil || in.dir != nil || len(in.ext) == 0 {
			continue
		}
		var out []disk.Extent
		moved := false
		for _, e := range in.ext {
			lb, pb, n := uint64(e.Logical), e.Start, uint64(e.Len)
			if !busy.overlaps(run{pb, n}) {
				out = append(out, e)
				continue
			}
			moved = true
			for i := range n {
				src := pb + i
				dst := src
				if busy.has(src) {
					dst = next()
					if _, err := ra.ReadAt(buf, int64(src)*blockSize); err != nil {
						w.err = opErr("relocate", "", err)
						return false
					}
					if err := w.writeAt(buf, dst); err != nil {
						w.err = opErr("relocate", "", err)
						return false
					}
					w.dirty.add(run{src, 1})
				}
				if k := len(out); k > 0 && uint64(out[k-1].Logical)+uint64(out[k-1].Len) == lb+i &&
					out[k-1].Start+uint64(out[k-1].Len) == dst && out[k-1].Len < disk.MaxExtentLen {
					out[k-1].Len++
				} else {
					out = append(out, disk.Extent{Logical: uint32(lb + i), Len: 1, Start: dst})
				}
			}
		}
		if moved {
			in.ext = out
		}
	}
	for _, r := range append(busy, skipped...) {
		w.alloc.release(r)
	}
	return true
}

// has reports whether block b is in the set.
func (s runSet) has(b uint64) bool { return s.overlaps(run{b, 1}) }

// overlaps reports whether any block of r is in the set.
func (s runSet) overlaps(r run) bool {
	for _, x := range s {
		if x.start < r.start+r.n && r.start < x.start+x.n {
			return true
		}
	}
	return false
}
