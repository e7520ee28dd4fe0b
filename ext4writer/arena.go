package ext4writer

import (
	"strings"

	"github.com/img2ext4/img2ext4/ext4writer/internal/disk"
)

// arenas hand out what the writer keeps for each entry: its inode, its name in its
// directory and the first extent of its body. Taken one by one from chunks they cost an
// allocation per chunk instead of three per entry, the better part of what the merged
// tree adds to archive/tar's own allocations per entry. A chunk lives as long as anything
// in it is referenced, so a removed or replaced entry keeps its slot (~184 bytes of inode,
// its name, 12 bytes of extent) until the whole chunk goes: memory grows with the entries
// given, not with the entries alive. Images remove few of the entries they give; a
// hostile one that replaces the same name over and over holds ~200 bytes per entry, which
// Limits.Entries of layerapply bounds (2 GB at its default of 10 million). Freed slots are
// not reused: a body reader of [Writer.Open] keeps the extent list it was given.
type arenas struct {
	inodes  []inode
	extents []disk.Extent
	names   strings.Builder
}

const (
	inodeChunk  = 256     // inodes
	extentChunk = 1024    // extents
	nameChunk   = 8 << 10 // bytes
)

// inode returns a new inode, zeroed.
func (a *arenas) inode() *inode {
	if len(a.inodes) == cap(a.inodes) {
		a.inodes = make([]inode, 0, inodeChunk)
	}
	a.inodes = a.inodes[:len(a.inodes)+1]
	return &a.inodes[len(a.inodes)-1]
}

// extent returns an empty extent list with room for one extent, a slot of its own in a
// chunk; an append beyond it moves the list out of the chunk, as any append does.
func (a *arenas) extent() []disk.Extent {
	if len(a.extents) == cap(a.extents) {
		a.extents = make([]disk.Extent, 0, extentChunk)
	}
	i := len(a.extents)
	a.extents = a.extents[:i+1]
	return a.extents[i : i : i+1]
}

// name returns a copy of s that does not keep s's memory alive (s is often a part of a
// whole tar path). The copies are appended to a strings.Builder and cut out of its
// String: a Builder only ever appends, so the bytes of a string it returned never change;
// when a chunk is full the next name starts a new Builder, and the old chunk stays alive
// as long as its names do.
func (a *arenas) name(s string) string {
	if a.names.Cap()-a.names.Len() < len(s) {
		a.names = strings.Builder{}
		a.names.Grow(max(nameChunk, len(s)))
	}
	n := a.names.Len()
	a.names.WriteString(s)
	return a.names.String()[n:]
}
