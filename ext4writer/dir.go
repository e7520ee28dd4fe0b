package ext4writer

import (
	"fmt"
	"slices"
	"strings"

	"github.com/img2ext4/img2ext4/ext4writer/internal/disk"
)

// dent is one directory entry while laying out.
type dent struct {
	name string
	in   *inode
	hash uint32
}

// dirLayout is how a directory's entries map onto its blocks.
type dirLayout struct {
	ents    []dent
	starts  []int // index in ents of each leaf's first entry
	htree   bool
	levels  int // htree indirect levels
	nodes   [2]int
	nblocks uint64
}

type dirGeom struct {
	leafCap   int // usable bytes in a leaf block
	rootLimit int
	nodeLimit int
	seed      [4]uint32
}

func (w *Writer) dirGeom() dirGeom {
	g := dirGeom{leafCap: blockSize, rootLimit: (blockSize - 32) / 8, nodeLimit: (blockSize - 8) / 8}
	if !w.o.legacy {
		g.leafCap -= disk.DirTailSize
		g.rootLimit--
		g.nodeLimit--
	}
	for i := range g.seed {
		g.seed[i] = le32(w.o.hashSeed[4*i:])
	}
	return g
}

func le32(b []byte) uint32 {
	return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
}

// pack splits ents into blocks of cap bytes, the first starting at used.
func pack(ents []dent, used, cap int) []int {
	starts := []int{0}
	for i, e := range ents {
		n := disk.DirRecLen(len(e.name))
		if used+n > cap {
			starts = append(starts, i)
			used = 0
		}
		used += n
	}
	return starts
}

// layoutDir sorts a directory's entries and decides its block structure.
func (w *Writer) layoutDir(in *inode, g dirGeom, minBlocks int) (*dirLayout, error) {
	d := &dirLayout{ents: make([]dent, 0, len(in.dir.children))}
	for name, c := range in.dir.children {
		d.ents = append(d.ents, dent{name: name, in: c})
	}
	total := 24
	for _, e := range d.ents {
		total += disk.DirRecLen(len(e.name))
	}
	if total <= g.leafCap {
		slices.SortFunc(d.ents, func(a, b dent) int { return strings.Compare(a.name, b.name) })
		d.starts = []int{0}
		d.nblocks = uint64(max(1, minBlocks))
		return d, nil
	}
	d.htree = true
	for i := range d.ents {
		d.ents[i].hash = disk.HalfMD4([]byte(d.ents[i].name), g.seed, true)
	}
	slices.SortFunc(d.ents, func(a, b dent) int {
		switch {
		case a.hash < b.hash:
			return -1
		case a.hash > b.hash:
			return 1
		}
		return strings.Compare(a.name, b.name)
	})
	d.starts = pack(d.ents, 0, g.leafCap)
	l := len(d.starts)
	switch {
	case l <= g.rootLimit:
	case (l+g.nodeLimit-1)/g.nodeLimit <= g.rootLimit:
		d.levels = 1
		d.nodes[1] = (l + g.nodeLimit - 1) / g.nodeLimit
	default:
		d.levels = 2
		d.nodes[1] = (l + g.nodeLimit - 1) / g.nodeLimit
		d.nodes[0] = (d.nodes[1] + g.nodeLimit - 1) / g.nodeLimit
		if d.nodes[0] > g.rootLimit {
			return nil, fmt.Errorf("%w: directory too large", ErrInvalidFile)
		}
	}
	d.nblocks = uint64(1 + d.nodes[0] + d.nodes[1] + l)
	return d, nil
}

// buildDir renders a directory's blocks into buf (nblocks * blockSize).
func (w *Writer) buildDir(in *inode, d *dirLayout, g dirGeom, buf []byte, seed uint32) {
	clear(buf)
	csum := !w.o.legacy
	self, parent := in.ino, in.dir.parent.ino
	seal := func(b []byte) {
		if csum {
			disk.SealDirLeaf(b, seed)
		}
	}
	// fill writes ents into block b starting at off; the last entry
	// stretches to the usable end.
	fill := func(b []byte, off int, ents []dent) {
		last := -1
		for _, e := range ents {
			n := disk.DirRecLen(len(e.name))
			disk.PutDirent(b[off:], e.in.ino, n, e.name, disk.FileType(e.in.mode))
			last = off
			off += n
		}
		if last < 0 {
			disk.PutDirent(b[off:], 0, g.leafCap-off, "", 0)
			return
		}
		le.PutUint16(b[last+4:], uint16(g.leafCap-last))
	}
	leafEnts := func(i int) []dent {
		end := len(d.ents)
		if i+1 < len(d.starts) {
			end = d.starts[i+1]
		}
		return d.ents[d.starts[i]:end]
	}
	if !d.htree {
		b := buf[:blockSize]
		disk.PutDirent(b, self, 12, ".", disk.FtDir)
		if len(d.ents) == 0 {
			disk.PutDirent(b[12:], parent, g.leafCap-12, "..", disk.FtDir)
		} else {
			disk.PutDirent(b[12:], parent, 12, "..", disk.FtDir)
			fill(b, 24, d.ents)
		}
		seal(b)
		for i := uint64(1); i < d.nblocks; i++ {
			b := buf[i*blockSize : (i+1)*blockSize]
			fill(b, 0, nil)
			seal(b)
		}
		return
	}
	// htree: block 0 root, then index nodes (top level first), then leaves.
	nleaves := len(d.starts)
	leaf0 := 1 + d.nodes[0] + d.nodes[1]
	leafHash := make([]uint32, nleaves)
	for i := range nleaves {
		ents := leafEnts(i)
		b := buf[(leaf0+i)*blockSize : (leaf0+i+1)*blockSize]
		fill(b, 0, ents)
		seal(b)
		h := ents[0].hash
		if i > 0 {
			prev := leafEnts(i - 1)
			if prev[len(prev)-1].hash == h {
				h |= 1
			}
		}
		leafHash[i] = h
	}
	// children of the current level: (hash, logical block)
	type ref struct {
		hash uint32
		blk  int
	}
	refs := make([]ref, nleaves)
	for i := range refs {
		refs[i] = ref{leafHash[i], leaf0 + i}
	}
	putEntries := func(b []byte, countOff, limit int, rs []ref) {
		le.PutUint16(b[countOff:], uint16(limit))
		le.PutUint16(b[countOff+2:], uint16(len(rs)))
		le.PutUint32(b[countOff+4:], uint32(rs[0].blk))
		for k := 1; k < len(rs); k++ {
			le.PutUint32(b[countOff+8*k:], rs[k].hash)
			le.PutUint32(b[countOff+8*k+4:], uint32(rs[k].blk))
		}
		if csum {
			disk.SealDxNode(b, countOff, seed)
		}
	}
	next := leaf0
	for lvl := 1; lvl >= 0; lvl-- {
		n := d.nodes[lvl]
		if n == 0 {
			continue
		}
		next -= n
		var up []ref
		for j := range n {
			rs := refs[j*g.nodeLimit : min(len(refs), (j+1)*g.nodeLimit)]
			blk := next + j
			b := buf[blk*blockSize : (blk+1)*blockSize]
			disk.PutDirent(b, 0, blockSize, "", 0)
			putEntries(b, 8, g.nodeLimit, rs)
			up = append(up, ref{rs[0].hash, blk})
		}
		refs = up
	}
	b := buf[:blockSize]
	disk.PutDirent(b, self, 12, ".", disk.FtDir)
	disk.PutDirent(b[12:], parent, blockSize-12, "..", disk.FtDir)
	b[24+4] = 1 // half_md4
	b[24+5] = 8 // info length
	b[24+6] = uint8(d.levels)
	putEntries(b, 32, g.rootLimit, refs)
}
