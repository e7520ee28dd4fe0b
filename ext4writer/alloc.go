package ext4writer

import "slices"

// run is a physical block range.
type run struct{ start, n uint64 }

// allocator hands out blocks: first from runs freed by Remove (lowest
// address first), then from a cursor that moves upwards and jumps over the
// superblock and group descriptor backups of sparse_super groups, sized
// for the maximum image size.
type allocator struct {
	cursor    uint64
	free      []run // sorted, non-adjacent
	limit     uint64
	maxGroups uint64
	gdtRes    uint64 // group descriptor blocks per copy reserved for maxGroups
	bpg       uint64 // blocks per group
	// cursorOnly makes alloc and allocContig take blocks from the cursor
	// only, leaving the free runs free: the metadata of a stable layout
	// (see skipTo).
	cursorOnly bool
	nfree      uint64 // blocks in the free runs
}

func newAllocator(limitBlocks uint64, descSize uint64) allocator {
	g := (limitBlocks + blocksPerGroup - 1) / blocksPerGroup
	a := allocator{limit: limitBlocks, maxGroups: g, gdtRes: (g*descSize + blockSize - 1) / blockSize, bpg: blocksPerGroup}
	a.cursor = 1 + a.gdtRes
	return a
}

func (a *allocator) clone() allocator {
	c := *a
	c.free = slices.Clone(a.free)
	return c
}

// hasBackup reports whether group g holds a superblock copy under sparse_super.
func hasBackup(g uint64) bool {
	if g <= 1 {
		return true
	}
	for _, p := range [...]uint64{3, 5, 7} {
		x := g
		for x%p == 0 {
			x /= p
		}
		if x == 1 {
			return true
		}
	}
	return false
}

// nextBackup returns the smallest backup group > g.
func nextBackup(g uint64) uint64 {
	best := ^uint64(0)
	for _, p := range [...]uint64{3, 5, 7} {
		x := uint64(1)
		for x <= g {
			x *= p
		}
		best = min(best, x)
	}
	if g == 0 {
		return 1
	}
	return best
}

// skipEnd returns the first block at or after b outside a reserved backup region.
func (a *allocator) skipEnd(b uint64) uint64 {
	g := b / a.bpg
	if hasBackup(g) {
		if end := g*a.bpg + 1 + a.gdtRes; b < end {
			return end
		}
	}
	return b
}

// alloc returns up to n contiguous blocks.
func (a *allocator) alloc(n uint64) (start, cnt uint64, ok bool) {
	if len(a.free) > 0 && !a.cursorOnly {
		r := &a.free[0]
		start, cnt = r.start, min(n, r.n)
		r.start += cnt
		r.n -= cnt
		a.nfree -= cnt
		if r.n == 0 {
			a.free = a.free[1:]
		}
		return start, cnt, true
	}
	c := a.skipEnd(a.cursor)
	next := nextBackup(c/a.bpg) * a.bpg
	cnt = min(n, next-c)
	if c+cnt > a.limit {
		if c >= a.limit {
			return 0, 0, false
		}
		cnt = a.limit - c
	}
	a.cursor = c + cnt
	return c, cnt, true
}

// allocRuns allocates n blocks as one or more runs.
func (a *allocator) allocRuns(n uint64, dst []run) ([]run, bool) {
	for n > 0 {
		s, c, ok := a.alloc(n)
		if !ok {
			return dst, false
		}
		if k := len(dst); k > 0 && dst[k-1].start+dst[k-1].n == s {
			dst[k-1].n += c
		} else {
			dst = append(dst, run{s, c})
		}
		n -= c
	}
	return dst, true
}

// release returns a run to the free list.
func (a *allocator) release(r run) {
	if r.n == 0 {
		return
	}
	i, _ := slices.BinarySearchFunc(a.free, r.start, func(x run, s uint64) int {
		switch {
		case x.start < s:
			return -1
		case x.start > s:
			return 1
		}
		return 0
	})
	a.free = slices.Insert(a.free, i, r)
	a.nfree += r.n
	// merge with next, then previous
	if i+1 < len(a.free) && a.free[i].start+a.free[i].n == a.free[i+1].start {
		a.free[i].n += a.free[i+1].n
		a.free = slices.Delete(a.free, i+1, i+2)
	}
	if i > 0 && a.free[i-1].start+a.free[i-1].n == a.free[i].start {
		a.free[i-1].n += a.free[i].n
		a.free = slices.Delete(a.free, i, i+1)
		i--
	}
	// give back the top of the cursor
	if i == len(a.free)-1 && a.free[i].start+a.free[i].n == a.cursor {
		a.cursor = a.free[i].start
		a.nfree -= a.free[i].n
		a.free = a.free[:i]
	}
}

// allocContig returns n contiguous blocks: the first free run large
// enough, else from the cursor, giving any gap it jumps over to the
// free list.
func (a *allocator) allocContig(n uint64) (uint64, bool) {
	for i, r := range a.free {
		if r.n >= n && !a.cursorOnly {
			a.free[i].start += n
			a.free[i].n -= n
			a.nfree -= n
			if a.free[i].n == 0 {
				a.free = slices.Delete(a.free, i, i+1)
			}
			return r.start, true
		}
	}
	c := a.skipEnd(a.cursor)
	if next := nextBackup(c/a.bpg) * a.bpg; c+n > next {
		if n > next-c && a.skipEnd(next)+n <= next+a.bpg {
			gap := run{c, next - c}
			c = a.skipEnd(next)
			a.cursor = c
			a.release(gap)
		}
	}
	if c+n > a.limit {
		return 0, false
	}
	a.cursor = c + n
	return c, true
}

// skipTo moves the cursor up to block m, giving the blocks it passes
// over to the free runs, all but those of superblock backups.
func (a *allocator) skipTo(m uint64) {
	for b := a.skipEnd(a.cursor); b < m; {
		e := min(m, nextBackup(b/a.bpg)*a.bpg)
		a.release(run{b, e - b}) // above the cursor: it stays where it is
		b = a.skipEnd(e)
	}
	a.cursor = max(a.cursor, m)
}

// free reports whether block b is free: above the cursor, in a free run,
// or in the descriptor room of a backup group other than the first.
func (a *allocator) isFree(b uint64) bool {
	if b >= a.cursor {
		return true
	}
	if g := b / a.bpg; g > 0 && hasBackup(g) && b < g*a.bpg+1+a.gdtRes {
		return true
	}
	i, _ := slices.BinarySearchFunc(a.free, b, func(r run, b uint64) int {
		if r.start+r.n <= b {
			return -1
		}
		if r.start > b {
			return 1
		}
		return 0
	})
	return i < len(a.free) && a.free[i].start <= b && b < a.free[i].start+a.free[i].n
}

// regroup returns a copy of a for groups of bpg blocks whose superblock
// backups keep gdtRes descriptor blocks, or false when a block that
// layout needs for a backup is in use.
func (a *allocator) regroup(bpg, gdtRes uint64) (allocator, bool) {
	c := a.clone()
	if bpg == a.bpg && gdtRes == a.gdtRes {
		return c, true
	}
	// the new backups' room must be free now
	for g := uint64(1); g*bpg < a.cursor; g = nextBackup(g) {
		for b := g * bpg; b < g*bpg+1+gdtRes; b++ {
			if !a.isFree(b) {
				return c, false
			}
		}
	}
	if gdtRes > a.gdtRes {
		return c, false
	}
	// the old backups' room, and the first group's beyond gdtRes, is free
	c.release(run{1 + gdtRes, a.gdtRes - gdtRes})
	for g := uint64(1); g*a.bpg < a.cursor; g = nextBackup(g) {
		c.release(run{g * a.bpg, 1 + a.gdtRes})
	}
	c.bpg, c.gdtRes = bpg, gdtRes
	// and the new backups' is not
	for g := uint64(1); g*bpg < c.cursor; g = nextBackup(g) {
		c.take(run{g * bpg, min(1+gdtRes, c.cursor-g*bpg)})
	}
	return c, true
}

// take removes r from the free runs.
func (a *allocator) take(r run) {
	var out []run
	end := r.start + r.n
	for _, x := range a.free {
		xe := x.start + x.n
		if xe <= r.start || x.start >= end {
			out = append(out, x)
			continue
		}
		if x.start < r.start {
			out = append(out, run{x.start, r.start - x.start})
		}
		if xe > end {
			out = append(out, run{end, xe - end})
		}
	}
	a.free = out
	a.nfree = 0
	for _, x := range out {
		a.nfree += x.n
	}
}
