package ext4writer

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"

	"github.com/img2ext4/img2ext4/ext4writer/internal/disk"
)

var le = binary.LittleEndian

// layout is the result of planning the metadata at Close.
type layout struct {
	blocks    uint64 // image size in blocks
	groups    uint64
	ipg       uint32
	gdtBlocks uint64
	bb, ib    []uint64 // per-group bitmap blocks
	it        []uint64 // per-group inode table start
	alloc     allocator
	journal   *inode
	inodes    []*inode // by inode number (index 0 unused)
	largeDir  bool
	content   uint64 // blocks of files, directories, extent trees and xattr blocks
	xblocks   []*xattrBlock
}

// xattrBlock is an external attribute block and the inodes sharing it.
type xattrBlock struct {
	blk   uint64
	refs  uint32
	owner *inode // the first, whose attributes it holds
}

// xattrRefMax is the kernel's limit of inodes sharing one block
// (EXT4_XATTR_REFCOUNT_MAX).
const xattrRefMax = 1024

func ceilDiv(a, b uint64) uint64 { return (a + b - 1) / b }

func treeBlocks(n int) int {
	if n <= 4 {
		return 0
	}
	c := (n + disk.ExtentsPerBlock - 1) / disk.ExtentsPerBlock
	total := c
	for c > 4 {
		c = (c + disk.ExtentsPerBlock - 1) / disk.ExtentsPerBlock
		total += c
	}
	return total
}

// number returns the live inodes by number and sets their ino. Each
// keeps the number it was given when created (the root 2, lost+found 11,
// then in order of creation), so that what is added last neither
// renumbers what came before nor lands amid it: the inode tables and
// directories (laid out in inode order) of two images that differ in
// their last additions then stay alike. The numbers of removed inodes
// stay free inodes in the tables, unless that would make the tables
// larger than the inode ratio makes them anyway: then the numbers are
// closed up, keeping their order.
func (w *Writer) number() []*inode {
	inodes := make([]*inode, w.nextNum)
	inodes[disk.RootIno] = w.root
	var walk func(d *inode)
	walk = func(d *inode) {
		for _, c := range d.dir.children {
			if inodes[c.num] == c {
				continue // a hard link to an inode already placed
			}
			inodes[c.num] = c
			if c.dir != nil {
				walk(c)
			}
		}
	}
	walk(w.root)
	n := len(inodes)
	for n > disk.FirstIno && inodes[n-1] == nil {
		n--
	}
	inodes = inodes[:n]
	if uint64(n-1) > w.inodeRoom() {
		live := inodes[:disk.FirstIno:disk.FirstIno]
		for _, in := range inodes[disk.FirstIno:] {
			if in != nil {
				live = append(live, in)
			}
		}
		inodes = live
	}
	for i, in := range inodes {
		if in != nil {
			in.ino = uint32(i)
		}
	}
	return inodes
}

// inodeRoom returns how many inode numbers the image will have room for
// without counting them one by one: the fixed inode count, or what the
// inode ratio gives the smallest image that holds the blocks written so
// far, its journal and its free space, less the free inodes asked for (a
// lower bound of what fit computes).
func (w *Writer) inodeRoom() uint64 {
	o := w.o
	if o.inodeCount > 0 {
		return uint64(o.inodeCount)
	}
	a := &w.alloc
	t := uint64(o.size / blockSize)
	if t == 0 {
		t = a.cursor
		if want := o.wantAvailable(a.cursor - a.nfree); want > a.nfree {
			t += want - a.nfree
		}
		if o.journal {
			t += max(disk.JournalBlocks(t), 1024)
		}
	}
	rt := ceilDiv(t, blocksPerGroup/4) * (blocksPerGroup / 4)
	if g := ceilDiv(t, blocksPerGroup); g > 1 {
		rt = g * blocksPerGroup
	}
	room := rt * blockSize / uint64(o.inodeRatio)
	extra := uint64(o.freeInodes) + uint64(o.freeSpace/o.inodeRatio)
	if room < extra {
		return 0
	}
	return room - extra
}

// plan lays out all metadata for the given geometry. With align > 0 the
// metadata goes above the file data, from the next multiple of align
// blocks on, instead of filling the blocks that removed files left free
// first (see [Writer.fitStable]).
func (w *Writer) plan(inodes []*inode, alloc allocator, groups uint64, ipg uint32, jblocks, limit, align uint64) (*layout, error) {
	l := &layout{groups: groups, ipg: ipg, alloc: alloc, inodes: inodes}
	a := &l.alloc
	a.limit = limit
	if align > 0 {
		a.skipTo(ceilDiv(a.cursor, align) * align)
		a.cursorOnly = true
	}
	descSize := uint64(64)
	if w.o.legacy {
		descSize = 32
	}
	l.gdtBlocks = ceilDiv(groups*descSize, blockSize)
	fail := func() error {
		return &SizeError{Op: "close", Limit: int64(a.limit) * blockSize}
	}
	take := func(n uint64) ([]uint64, error) {
		runs, ok := a.allocRuns(n, nil)
		if !ok {
			return nil, fail()
		}
		out := make([]uint64, 0, n)
		for _, r := range runs {
			for i := range r.n {
				out = append(out, r.start+i)
			}
		}
		return out, nil
	}
	// Inode tables must each be contiguous. In small groups they go
	// first, so that the journal and the rest fill the gaps they leave
	// before superblock backups.
	itb := uint64(ipg) * disk.InodeSize / blockSize
	if a.bpg < blocksPerGroup {
		if err := l.allocTables(itb); err != nil {
			return nil, err
		}
	}
	var err error
	if l.bb, err = take(groups); err != nil {
		return nil, err
	}
	if l.ib, err = take(groups); err != nil {
		return nil, err
	}
	if l.it == nil {
		if err := l.allocTables(itb); err != nil {
			return nil, err
		}
	}
	g := w.dirGeom()
	shared := map[string]*xattrBlock{}
	for _, in := range inodes {
		if in == nil {
			continue
		}
		if in.dir != nil {
			minBlocks := 1
			if in == w.root.dir.children["lost+found"] {
				minBlocks = 4 // room for e2fsck to reconnect files
			}
			if in.dir.layout == nil {
				d, err := w.layoutDir(in, g, minBlocks)
				if err != nil {
					return nil, err
				}
				in.dir.layout = d
			}
			if in.dir.layout.levels > 1 {
				l.largeDir = true
			}
			runs, ok := a.allocRuns(in.dir.layout.nblocks, nil)
			if !ok {
				return nil, fail()
			}
			in.ext = in.ext[:0]
			var lb uint64
			for _, r := range runs {
				in.addExtent(lb, r.start, r.n)
				lb += r.n
			}
		}
		if err := l.allocTree(in, take); err != nil {
			return nil, err
		}
		for _, e := range in.ext {
			l.content += uint64(e.Len)
		}
		l.content += uint64(len(in.tree))
		in.xblk = 0
		in.xnext = len(in.xattrs)
		if len(in.xattrs) > 0 {
			k, err := splitXattrs(in.xattrs)
			if err != nil {
				return nil, err
			}
			in.xnext = k
			if k < len(in.xattrs) {
				// inodes with the same attributes share one block, as
				// the kernel shares them (up to 1024 references)
				key := xattrKey(in.xattrs[k:])
				xb := shared[key]
				if xb == nil || xb.refs >= xattrRefMax {
					b, err := take(1)
					if err != nil {
						return nil, err
					}
					xb = &xattrBlock{blk: b[0], owner: in}
					shared[key] = xb
					l.xblocks = append(l.xblocks, xb)
					l.content++
				}
				xb.refs++
				in.xblk = xb.blk
			}
		}
	}
	// the journal last: it is written but for its first block, so where
	// it lands, and how much of the free blocks it takes, changes no bytes
	if jblocks > 0 {
		j := &inode{mode: disk.SIFREG | 0o600, nlink: 1, size: int64(jblocks) * blockSize, ino: disk.JournalIno}
		runs, ok := a.allocRuns(jblocks, nil)
		if !ok {
			return nil, fail()
		}
		var lb uint64
		for _, r := range runs {
			j.addExtent(lb, r.start, r.n)
			lb += r.n
		}
		l.journal = j
		if err := l.allocTree(j, take); err != nil {
			return nil, err
		}
	}
	return l, nil
}

// allocTables allocates an inode table of itb blocks for each group.
func (l *layout) allocTables(itb uint64) error {
	l.it = make([]uint64, l.groups)
	for g := range l.groups {
		start, ok := l.alloc.allocContig(itb)
		if !ok {
			return &SizeError{Op: "close", Limit: int64(l.alloc.limit) * blockSize}
		}
		l.it[g] = start
	}
	return nil
}

func (l *layout) allocTree(in *inode, take func(uint64) ([]uint64, error)) error {
	in.tree = nil
	if n := treeBlocks(len(in.ext)); n > 0 {
		t, err := take(uint64(n))
		if err != nil {
			return err
		}
		in.tree = t
	}
	return nil
}

// finish computes the final layout. When the content does not fit a
// fixed size, the *SizeError tells the smallest size that would.
func (w *Writer) finish() (*layout, error) {
	if lf := w.root.dir.children["lost+found"]; lf == nil {
		w.root.dir.children["lost+found"] = &inode{mode: disk.SIFDIR | 0o700, nlink: 2, dir: &dirInfo{parent: w.root, children: map[string]*inode{}}, num: w.newNum()}
		w.root.dir.layout = nil
		w.root.dir.nsub++
		w.ninodes++
	}
	if w.nextNum > 1<<32 {
		return nil, opErr("close", "", ErrTooManyInodes)
	}
	// A directory's layout depends only on its children (see dirInfo.layout): the ones a
	// MinSize before laid out and that have not changed since are not laid out again.
	inodes := w.number()
	used := uint64(len(inodes) - 1)
	if used > 1<<32-1 {
		return nil, opErr("close", "", ErrTooManyInodes)
	}
	fixed := uint64(w.o.size / blockSize)
	if !w.overflow {
		l, err := w.fitStable(inodes, used, fixed)
		if w.err != nil {
			return nil, w.err // moving bodies for smaller groups failed
		}
		var se *SizeError
		if fixed == 0 || !errors.As(err, &se) {
			return l, err
		}
	}
	// the content does not fit the fixed size: find the size that would
	se := &SizeError{Op: "close", Limit: w.o.size}
	if m, err := w.fit(inodes, used, 0, maxMaxSize/blockSize, true, 0); err == nil {
		se.Need = int64(m.blocks) * blockSize
	}
	return nil, se
}

// fitStable returns the layout of [Writer.fit] with its metadata in a
// stable place when that makes the image no larger: above the file data,
// from a multiple of a large alignment on, rather than in the first
// blocks free. Two images whose content differs only in what was added
// last then keep the metadata at the same offset, and so share most of
// their bytes at the same offsets (what chunked, deduplicated storage of
// the images needs). The gap left below the metadata is free space of
// the filesystem, part of the free space asked for, so it costs nothing
// while it is smaller than that.
func (w *Writer) fitStable(inodes []*inode, used, fixed uint64) (*layout, error) {
	compact, err := w.fit(inodes, used, fixed, w.alloc.limit, false, 0)
	if err != nil || w.err != nil {
		return compact, err
	}
	for _, align := range metaAligns(w.o.wantAvailable(compact.content)) {
		l, err := w.fit(inodes, used, fixed, w.alloc.limit, false, align)
		if w.err != nil {
			return nil, w.err
		}
		if err == nil && l.blocks <= compact.blocks {
			return l, nil
		}
	}
	// plan sets the inodes' metadata blocks: plan the compact layout again
	return w.fit(inodes, used, fixed, w.alloc.limit, false, 0)
}

// Alignments of the metadata region, in blocks, that fitStable tries.
const (
	minMetaAlign = 2 << 20 / blockSize // the chunk size of chunked image stores
	maxMetaAlign = 1 << 30 / blockSize
)

// metaAligns returns the alignments of the metadata region to try for an
// image that leaves avail blocks available: the largest power of two up
// to that (the larger the alignment, the more the content may grow
// without moving the metadata; the gap below it, up to the alignment,
// is part of the free space), half of it, then the smallest. The size
// check in fitStable rejects those that would make the image larger.
func metaAligns(avail uint64) []uint64 {
	a := uint64(minMetaAlign)
	for a*2 <= avail && a < maxMetaAlign {
		a *= 2
	}
	switch {
	case a == minMetaAlign:
		return []uint64{a}
	case a/2 == minMetaAlign:
		return []uint64{a, minMetaAlign}
	}
	return []uint64{a, a / 2, minMetaAlign}
}

// regroup chooses the blocks per group for an image of about t blocks in
// groups groups of ipg inodes, as mke2fs -N does: 32768, or fewer when
// the inodes need more groups than the blocks (at most 32768 inodes fit
// a group), so that inode-heavy images are not padded with full-size
// groups. It returns the allocator for that geometry, which keeps the
// 32768 of the bodies already placed when their blocks are in the way of
// the smaller groups' superblock backups.
func (w *Writer) regroup(inodes []*inode, t, groups, ipg uint64) (allocator, uint64) {
	if groups <= ceilDiv(t, blocksPerGroup) {
		return w.alloc.clone(), blocksPerGroup
	}
	// e2fsck wants the inode table to fit in a group with 4 blocks to spare
	bpg := max(ceilDiv(t, groups), ipg*disk.InodeSize/blockSize+4)
	bpg = min((bpg+7)&^7, blocksPerGroup)
	descSize := uint64(64)
	if w.o.legacy {
		descSize = 32
	}
	gdtRes := ceilDiv(groups*descSize, blockSize)
	if a, ok := w.alloc.regroup(bpg, gdtRes); ok {
		return a, bpg
	}
	// bodies are in the way: move them, when they can be read back
	if w.relocate(inodes, bpg, gdtRes) {
		if a, ok := w.alloc.regroup(bpg, gdtRes); ok {
			return a, bpg
		}
	}
	return w.alloc.clone(), blocksPerGroup
}

// fit finds a fixed point of image size, group count, inode count and
// journal size: the fixed size, or the smallest that leaves the space
// asked for available (only the minimum with minimal).
func (w *Writer) fit(inodes []*inode, used, fixed, limit uint64, minimal bool, align uint64) (*layout, error) {
	o := w.o
	t := w.alloc.cursor
	if fixed > 0 {
		t = fixed
	}
	var groups, jblocks uint64
	for range 64 {
		groups = max(groups, ceilDiv(t, blocksPerGroup))
		if o.journal {
			jblocks = max(jblocks, disk.JournalBlocks(t), 1024)
		}
		// free space asked for comes with inodes at the inode ratio
		want := used + uint64(o.freeInodes) + uint64(o.freeSpace/o.inodeRatio)
		if o.inodeCount > 0 {
			if uint64(o.inodeCount) < used {
				return nil, opErr("close", "", fmt.Errorf("%w: need %d, have %d", ErrTooManyInodes, used, o.inodeCount))
			}
			want = uint64(o.inodeCount)
		} else {
			// The ratio counts whole groups, or quarters of a group in a
			// one-group image: the inodes per group, and so where each
			// inode lies, stay the same while the image size changes a
			// little, at the cost of at most one group's share of inodes
			// (2 MiB of inode table at the default ratio, 512 KiB in a
			// one-group image).
			rt := ceilDiv(t, blocksPerGroup/4) * (blocksPerGroup / 4)
			if g := ceilDiv(t, blocksPerGroup); g > 1 {
				rt = g * blocksPerGroup
			}
			want = max(want, rt*blockSize/uint64(o.inodeRatio))
		}
		if want > used && o.inodeCount == 0 {
			// a ratio-derived count is capped by what ext4 can number
			want = max(used, min(want, 1<<32-1))
		}
		groups = max(groups, ceilDiv(want, disk.MaxInodesPerGr))
		ipg := (ceilDiv(want, groups) + 15) &^ 15
		ipg = max(ipg, 16)
		if groups*ipg > 1<<32-1 && o.inodeCount == 0 {
			ipg = (1<<32 - 1) / groups &^ 15
		}
		if ipg > disk.MaxInodesPerGr || groups*ipg > 1<<32-1 || groups*ipg < used {
			return nil, opErr("close", "", fmt.Errorf("%w: %d needed", ErrTooManyInodes, used))
		}
		alloc, bpg := w.regroup(inodes, t, groups, ipg)
		l, err := w.plan(inodes, alloc, groups, uint32(ipg), jblocks, limit, align)
		if err != nil {
			return nil, err
		}
		end := l.alloc.cursor
		nt := end
		if fixed > 0 {
			if end > fixed {
				return nil, &SizeError{Op: "close", Limit: int64(fixed) * blockSize}
			}
			nt = fixed
		}
		avail := uint64(0)
		if fixed == 0 {
			avail = MinFreeSpace / blockSize
			if !minimal {
				avail = o.wantAvailable(l.content)
			}
		}
		for range 64 {
			nt = max(nt, (groups-1)*bpg+1)
			lastG := (nt - 1) / bpg
			if hasBackup(lastG) {
				nt = max(nt, lastG*bpg+1+l.alloc.gdtRes+1)
			}
			a := w.available(l, nt)
			if fixed > 0 || a >= avail {
				break
			}
			nt += avail - a
		}
		if nt > limit {
			return nil, &SizeError{Op: "close", Limit: int64(limit) * blockSize, Need: int64(nt) * blockSize}
		}
		ng := ceilDiv(nt, bpg)
		jok := !o.journal || disk.JournalBlocks(nt) <= jblocks
		if ng == groups && jok && (o.inodeCount > 0 || fixed > 0 || nt*blockSize/uint64(o.inodeRatio) <= groups*uint64(ipg)) {
			l.blocks = nt
			return l, nil
		}
		t = nt
	}
	return nil, opErr("close", "", fmt.Errorf("ext4writer: layout did not converge"))
}

// MinSize returns the size in bytes of the image if it were closed now:
// the smallest that holds everything added plus [WithFreeSpace], or the
// fixed [WithSize]. After Close it returns the final size. It costs a
// pass over all entries.
func (w *Writer) MinSize() (int64, error) {
	if w.closed {
		return w.size, nil
	}
	if err := w.check("size", ""); err != nil {
		return 0, err
	}
	l, err := w.finish()
	if err != nil {
		return 0, err
	}
	return int64(l.blocks) * blockSize, nil
}

// alignSize rounds a computed size up to [WithAlign]'s multiple.
func (w *Writer) alignSize() error {
	if w.o.size != 0 || w.o.align <= blockSize {
		return nil
	}
	min, err := w.MinSize()
	if err != nil {
		return err
	}
	if target := (min + w.o.align - 1) / w.o.align * w.o.align; target != min {
		return w.SetSize(target)
	}
	return nil
}

// Close lays out and writes all metadata: inode tables, directories,
// bitmaps, group descriptors, superblocks and the journal. It fails if a
// body is incomplete. The Writer is unusable afterwards; Close does not
// close the underlying file.
func (w *Writer) Close() error {
	if w.closed {
		return w.err
	}
	if err := w.check("close", ""); err != nil {
		w.closed = true
		return err
	}
	if err := w.alignSize(); err != nil {
		w.closed = true
		w.err = err
		return err
	}
	w.closed = true
	if err := w.flush(); err != nil {
		w.err = opErr("close", "", err)
		return w.err
	}
	l, err := w.finish()
	if err != nil {
		w.err = err
		return err
	}
	if err := w.zeroDirty(l.blocks); err != nil {
		w.err = opErr("close", "", fmt.Errorf("zero freed blocks: %w", err))
		return w.err
	}
	if err := w.writeMeta(l); err != nil {
		w.err = opErr("close", "", err)
		return w.err
	}
	w.size = int64(l.blocks) * blockSize
	return nil
}

// itPiece is how many inodes of a table writeMeta writes at once: 1 MiB, a whole number
// of blocks, so that the buffer stays small and warm instead of a group's whole table
// (3.7 MiB for 15,008 inodes) being allocated and cleared.
const itPiece = 4096

func (w *Writer) writeMeta(l *layout) error {
	o := w.o
	csum := !o.legacy
	sb := &disk.Super{
		BlocksCount:      l.blocks,
		InodesPerGroup:   l.ipg,
		BlocksPerGroup:   uint32(l.alloc.bpg),
		InodesCount:      uint32(l.groups) * l.ipg,
		FeatureCompat:    disk.CompatExtAttr | disk.CompatDirIndex,
		FeatureIncompat:  disk.IncompatFiletype | disk.IncompatExtents | disk.IncompatFlexBG,
		FeatureRoCompat:  disk.RoCompatSparseSuper | disk.RoCompatLargeFile | disk.RoCompatHugeFile | disk.RoCompatDirNlink | disk.RoCompatExtraIsize,
		UUID:             o.uuid,
		HashSeed:         o.hashSeed,
		DescSize:         0,
		Flags:            0x2, // unsigned directory hash
		LogGroupsPerFlex: 4,
		MetadataCsum:     csum,
		DefaultMountOpts: 0x000C, // user_xattr, acl
		MkfsTime:         o.mkfsTime,
	}
	copy(sb.Label[:], o.label)
	descSize := 32
	if csum {
		sb.FeatureRoCompat |= disk.RoCompatMetadataCsum
		sb.FeatureIncompat |= disk.Incompat64bit
		sb.DescSize = 64
		descSize = 64
	} else {
		sb.FeatureRoCompat |= disk.RoCompatGdtCsum
	}
	if o.readOnly {
		sb.FeatureRoCompat |= disk.RoCompatReadonly
	}
	if l.largeDir {
		sb.FeatureIncompat |= disk.IncompatLargeDir
	}
	if l.journal != nil {
		sb.FeatureCompat |= disk.CompatHasJournal
		sb.HasJournal = true
	}
	sb.RBlocksCount = l.blocks * uint64(o.reservedPct) / 100
	fsSeed := sb.FsSeed()
	g := w.dirGeom()

	// directories, extent trees, xattr blocks
	var dirBuf []byte
	for _, in := range l.inodes {
		if in == nil {
			continue
		}
		iseed := disk.InodeSeed(fsSeed, in.ino, 0)
		if in.dir != nil {
			d := in.dir.layout
			n := int(d.nblocks) * blockSize
			if cap(dirBuf) < n {
				dirBuf = make([]byte, n)
			}
			buf := dirBuf[:n]
			w.buildDir(in, d, g, buf, iseed)
			for _, e := range in.ext {
				off := int(e.Logical) * blockSize
				if err := w.writeAt(buf[off:off+int(e.Len)*blockSize], e.Start); err != nil {
					return err
				}
			}
			d.ents, d.starts = nil, nil
		}
	}
	for _, xb := range l.xblocks {
		if err := w.writeXattrBlock(xb, fsSeed, csum); err != nil {
			return err
		}
	}
	var jb disk.Inode
	if l.journal != nil {
		if err := w.writeTree(l.journal, &jb, fsSeed, csum); err != nil {
			return err
		}
		j := w.blk
		disk.PutJournalSuper(j, uint32(l.journal.size/blockSize), o.uuid, csum)
		if err := w.writeAt(j, l.journal.ext[0].Start); err != nil {
			return err
		}
		for i := range 15 {
			sb.JnlBlocks[i] = le32(jb.Block[4*i:])
		}
		sb.JnlBlocks[15] = uint32(uint64(l.journal.size) >> 32)
		sb.JnlBlocks[16] = uint32(l.journal.size)
	}

	// inode tables, each written up to its last inode in use; the numbers
	// removed inodes left free are empty inodes
	ipg := uint64(l.ipg)
	maxIno := uint64(len(l.inodes) - 1)
	inUse := func(ino uint64) bool { return ino < disk.FirstIno || l.inodes[ino] != nil }
	// lastUsed returns the last inode in use of group grp, or 0
	lastUsed := func(grp uint64) uint64 {
		first := grp*ipg + 1
		for ino := min(maxIno, first+ipg-1); ino >= first; ino-- {
			if inUse(ino) {
				return ino
			}
		}
		return 0
	}
	usedDirs := make([]uint32, l.groups)
	var tbl []byte
	for grp := range l.groups {
		first := grp*ipg + 1
		if first > maxIno {
			break
		}
		last := lastUsed(grp)
		if last == 0 {
			continue
		}
		// in pieces of at most itPiece inodes, through one buffer
		for lo := first; lo <= last; lo += itPiece {
			hi := min(last, lo+itPiece-1)
			n := int(hi-lo+1) * disk.InodeSize
			if cap(tbl) < n {
				tbl = make([]byte, n)
			}
			buf := tbl[:n]
			clear(buf)
			for ino := lo; ino <= hi; ino++ {
				b := buf[int(ino-lo)*disk.InodeSize:]
				var di disk.Inode
				in := l.inodes[ino]
				switch {
				case ino == disk.JournalIno && l.journal != nil:
					di = jb
					di.Mode = l.journal.mode
					di.Links = 1
					di.Size = uint64(l.journal.size)
					di.Flags = disk.FlagExtents
					di.Blocks = uint64(len(l.journal.tree))*8 + uint64(l.journal.size)/512
				case in == nil:
					// reserved inode: empty
				default:
					if err := w.encodeInode(in, &di, fsSeed, csum); err != nil {
						return err
					}
					if in.dir != nil {
						usedDirs[grp]++
					}
				}
				di.Marshal(b, uint32(ino), fsSeed, csum)
			}
			if err := w.writeAt(buf, l.it[grp]+(lo-first)*disk.InodeSize/blockSize); err != nil {
				return err
			}
		}
	}

	// bitmaps and group descriptors
	gdt := make([]byte, l.gdtBlocks*blockSize)
	bm := make([]byte, blockSize)
	a := &l.alloc
	freeRuns := a.free
	var freeBlocks, freeInodes uint64
	for grp := range l.groups {
		gs := grp * l.alloc.bpg
		ge := min(gs+l.alloc.bpg, l.blocks)
		clear(bm)
		setBits(bm, 0, min(ge, a.cursor)-min(gs, a.cursor), true)
		for len(freeRuns) > 0 && freeRuns[0].start+freeRuns[0].n <= gs {
			freeRuns = freeRuns[1:]
		}
		for _, r := range freeRuns {
			if r.start >= ge {
				break
			}
			s, e := max(r.start, gs), min(r.start+r.n, ge)
			setBits(bm, s-gs, e-gs, false)
		}
		if hasBackup(grp) {
			setBits(bm, 0, min(1+a.gdtRes, ge-gs), false)
			setBits(bm, 0, min(1+l.gdtBlocks, ge-gs), true)
		}
		setBits(bm, ge-gs, 8*blockSize, true)
		free := (ge - gs) - uint64(popcount(bm)) + (8*blockSize - (ge - gs))
		freeBlocks += free
		// an all-zero bitmap (an empty group without backups) stays a hole
		if !bytes.Equal(bm, zeroBlock) {
			if err := w.writeAt(bm, l.bb[grp]); err != nil {
				return err
			}
		}
		gd := disk.GroupDesc{BlockBitmap: l.bb[grp], InodeBitmap: l.ib[grp], InodeTable: l.it[grp], FreeBlocks: uint32(free), UsedDirs: usedDirs[grp]}
		if csum {
			gd.BlockBitmapCsum = disk.Crc32c(fsSeed, bm[:l.alloc.bpg/8])
		}
		// inode bitmap
		first := grp*ipg + 1
		usedHere, high := uint64(0), uint64(0)
		clear(bm)
		if last := lastUsed(grp); last > 0 {
			high = last - first + 1
			for ino := first; ino <= last; ino++ {
				if inUse(ino) {
					bm[(ino-first)/8] |= 1 << ((ino - first) % 8)
					usedHere++
				}
			}
		}
		setBits(bm, ipg, 8*blockSize, true)
		gd.FreeInodes = uint32(ipg - usedHere)
		freeInodes += ipg - usedHere
		gd.ItableUnused = uint32(ipg - high)
		gd.Flags = disk.BGInodeZeroed
		if usedHere == 0 {
			gd.Flags |= disk.BGInodeUninit
		}
		if csum {
			gd.InodeBitmapCsum = disk.Crc32c(fsSeed, bm[:ipg/8])
		}
		// groups flagged INODE_UNINIT have their inode bitmap built in
		// memory by the kernel and e2fsck: leave it a hole
		if usedHere > 0 {
			if err := w.writeAt(bm, l.ib[grp]); err != nil {
				return err
			}
		}
		gd.Marshal(gdt[int(grp)*descSize:], descSize, uint32(grp), fsSeed, csum, !csum, o.uuid[:])
	}
	sb.FreeBlocksCount = freeBlocks
	sb.FreeInodesCount = uint32(freeInodes)
	w.stats = Stats{Size: int64(l.blocks) * blockSize, BlockSize: blockSize, Blocks: l.blocks, FreeBlocks: freeBlocks,
		ReservedBlocks: sb.RBlocksCount, KernelReserved: kernelReserve(l.blocks), Inodes: l.groups * ipg, FreeInodes: freeInodes}
	w.planFree = l.freeBlocks(l.blocks)
	sbuf := make([]byte, blockSize)
	for grp := range l.groups {
		if !hasBackup(grp) {
			continue
		}
		clear(sbuf)
		off := 0
		if grp == 0 {
			off = disk.SuperOffset
		}
		sb.Marshal(sbuf[off:], uint32(grp))
		if err := w.writeAt(sbuf, grp*l.alloc.bpg); err != nil {
			return err
		}
		if err := w.writeAt(gdt, grp*l.alloc.bpg+1); err != nil {
			return err
		}
	}
	return w.setLength(int64(l.blocks) * blockSize)
}

// setBits sets or clears bits [from, to) of b.
func setBits(b []byte, from, to uint64, v bool) {
	for i := from; i < to; {
		if i%8 == 0 && to-i >= 8 {
			if v {
				b[i/8] = 0xFF
			} else {
				b[i/8] = 0
			}
			i += 8
			continue
		}
		if v {
			b[i/8] |= 1 << (i % 8)
		} else {
			b[i/8] &^= 1 << (i % 8)
		}
		i++
	}
}

func popcount(b []byte) int {
	n := 0
	for i := 0; i+8 <= len(b); i += 8 {
		n += bits.OnesCount64(le.Uint64(b[i:]))
	}
	return n
}

func (w *Writer) writeAt(p []byte, blk uint64) error {
	if w.overflow {
		return nil // the image fails at Close; only its size matters now
	}
	off := int64(blk) * blockSize
	if _, err := w.f.WriteAt(p, off); err != nil {
		return err
	}
	w.hiWater = max(w.hiWater, off+int64(len(p)))
	return nil
}

// setLength makes the output n bytes long without writing data.
func (w *Writer) setLength(n int64) error {
	if t, ok := w.f.(interface{ Truncate(int64) error }); ok {
		if t.Truncate(n) == nil {
			return nil
		}
	}
	if w.hiWater >= n {
		return nil
	}
	_, err := w.f.WriteAt([]byte{0}, n-1)
	return err
}

func (w *Writer) encodeInode(in *inode, di *disk.Inode, fsSeed uint32, csum bool) error {
	di.Mode = in.mode
	di.UID, di.GID = in.uid, in.gid
	di.Atime, di.Ctime, di.Mtime, di.Crtime = in.atime, in.ctime, in.mtime, in.crtime
	di.Size = uint64(in.size)
	di.Links = uint16(in.nlink)
	var nblocks uint64
	switch in.mode & disk.SIFMT {
	case disk.SIFDIR:
		di.Size = in.dir.layout.nblocks * blockSize
		links := 2 + uint64(in.dir.nsub)
		if links > maxLinks {
			links = 1
		}
		di.Links = uint16(links)
		di.Flags = disk.FlagExtents
		if in.dir.layout.htree {
			di.Flags |= disk.FlagIndex
		}
	case disk.SIFLNK:
		if len(in.ext) == 0 {
			copy(di.Block[:], in.link)
		} else {
			di.Flags = disk.FlagExtents
		}
	case disk.SIFCHR, disk.SIFBLK:
		disk.EncodeDev(di.Block[:], in.major, in.minor)
	case disk.SIFREG:
		di.Flags = disk.FlagExtents
	}
	if di.Flags&disk.FlagExtents != 0 {
		if err := w.writeTree(in, di, fsSeed, csum); err != nil {
			return err
		}
		for _, e := range in.ext {
			nblocks += uint64(e.Len)
		}
		nblocks += uint64(len(in.tree))
	}
	if in.xblk != 0 {
		nblocks++
		di.FileACL = in.xblk
	}
	di.Blocks = nblocks * (blockSize / 512)
	if in.xnext > 0 {
		area := make([]byte, disk.InodeXattrSpace)
		le.PutUint32(area, disk.XattrMagic)
		putXattrs(area, 4, len(area), 4, in.xattrs[:in.xnext])
		di.Xattr = area
	}
	return nil
}

func (w *Writer) writeXattrBlock(xb *xattrBlock, fsSeed uint32, csum bool) error {
	in := xb.owner
	b := w.blk
	clear(b)
	hashes := putXattrs(b, disk.XattrHeaderSize, blockSize, 0, in.xattrs[in.xnext:])
	disk.SealXattrBlock(b, xb.blk, xb.refs, hashes, fsSeed, csum)
	return w.writeAt(b, xb.blk)
}

// writeTree fills di.Block with the extent root of in and writes any
// extent tree blocks.
func (w *Writer) writeTree(in *inode, di *disk.Inode, fsSeed uint32, csum bool) error {
	ext := in.ext
	if len(ext) <= 4 {
		disk.PutExtentHeader(di.Block[:], uint16(len(ext)), 4, 0)
		for i, e := range ext {
			disk.PutExtentLeaf(di.Block[12+12*i:], e)
		}
		return nil
	}
	seed := disk.InodeSeed(fsSeed, in.ino, 0)
	type item struct {
		logical uint32
		blk     uint64
	}
	tree := in.tree
	b := w.blk
	var items []item
	for i := 0; i < len(ext); i += disk.ExtentsPerBlock {
		chunk := ext[i:min(len(ext), i+disk.ExtentsPerBlock)]
		clear(b)
		disk.PutExtentHeader(b, uint16(len(chunk)), disk.ExtentsPerBlock, 0)
		for k, e := range chunk {
			disk.PutExtentLeaf(b[12+12*k:], e)
		}
		if csum {
			disk.SealExtentBlock(b, seed)
		}
		if err := w.writeAt(b, tree[0]); err != nil {
			return err
		}
		items = append(items, item{chunk[0].Logical, tree[0]})
		tree = tree[1:]
	}
	depth := uint16(1)
	for len(items) > 4 {
		var up []item
		for i := 0; i < len(items); i += disk.ExtentsPerBlock {
			chunk := items[i:min(len(items), i+disk.ExtentsPerBlock)]
			clear(b)
			disk.PutExtentHeader(b, uint16(len(chunk)), disk.ExtentsPerBlock, depth)
			for k, it := range chunk {
				disk.PutExtentIndex(b[12+12*k:], it.logical, it.blk)
			}
			if csum {
				disk.SealExtentBlock(b, seed)
			}
			if err := w.writeAt(b, tree[0]); err != nil {
				return err
			}
			up = append(up, item{chunk[0].logical, tree[0]})
			tree = tree[1:]
		}
		items = up
		depth++
	}
	disk.PutExtentHeader(di.Block[:], uint16(len(items)), 4, depth)
	for k, it := range items {
		disk.PutExtentIndex(di.Block[12+12*k:], it.logical, it.blk)
	}
	return nil
}
