package ext4writer

import "testing"

func TestAllocator(t *testing.T) {
	const groups = 30
	a := newAllocator(groups*blocksPerGroup, 64)
	inSkip := func(b uint64) bool {
		g := b / blocksPerGroup
		return hasBackup(g) && b < g*blocksPerGroup+1+a.gdtRes
	}
	used := map[uint64]bool{}
	take := func(s, n uint64) {
		for b := s; b < s+n; b++ {
			if inSkip(b) {
				t.Fatalf("block %d is in a backup region", b)
			}
			if used[b] {
				t.Fatalf("block %d handed out twice", b)
			}
			used[b] = true
		}
	}
	// runs across several backup groups
	var total uint64
	for total < 5*blocksPerGroup {
		s, n, ok := a.alloc(7000)
		if !ok {
			t.Fatal("alloc failed")
		}
		take(s, n)
		total += n
	}
	// free some, they come back first, lowest first
	a.release(run{40000, 10})
	a.release(run{20000, 5})
	a.release(run{20005, 5}) // merges
	for b := uint64(20000); b < 20010; b++ {
		delete(used, b)
	}
	for b := uint64(40000); b < 40010; b++ {
		delete(used, b)
	}
	if len(a.free) != 2 || a.free[0] != (run{20000, 10}) {
		t.Fatalf("free list %v", a.free)
	}
	s, n, _ := a.alloc(100)
	if s != 20000 || n != 10 {
		t.Fatalf("got %d+%d, want the freed run at 20000", s, n)
	}
	take(s, n)
	// a contiguous request larger than what is left before the next
	// backup jumps over it and frees the gap
	a.free = nil
	next := nextBackup(a.cursor/blocksPerGroup) * blocksPerGroup
	a.cursor = next - 100
	s2, ok := a.allocContig(2048)
	if !ok || s2 != next+1+a.gdtRes {
		t.Fatalf("allocContig at %d, want %d", s2, next+1+a.gdtRes)
	}
	if len(a.free) != 1 || a.free[0] != (run{next - 100, 100}) {
		t.Fatalf("gap not freed: %v", a.free)
	}
	// releasing the top lowers the cursor
	c := a.cursor
	a.release(run{c - 48, 48})
	if a.cursor != c-48 {
		t.Fatalf("cursor %d, want %d", a.cursor, c-48)
	}
	for _, g := range []uint64{0, 1, 3, 5, 7, 9, 25, 27, 49, 81, 125, 243, 343} {
		if !hasBackup(g) {
			t.Errorf("group %d should hold a backup", g)
		}
	}
	for _, g := range []uint64{2, 4, 6, 8, 10, 15, 21, 35, 45} {
		if hasBackup(g) {
			t.Errorf("group %d should not hold a backup", g)
		}
	}
	// the limit is enforced
	a.free = nil
	a.cursor = a.limit - 1
	if _, n, ok := a.alloc(10); !ok || n != 1 {
		t.Fatalf("partial alloc at limit: %d %v", n, ok)
	}
	if _, _, ok := a.alloc(1); ok {
		t.Fatal("alloc past limit succeeded")
	}
}
