package ext4writer

import (
	"fmt"
	"strconv"
)

// Stats describes a finished image, as [Writer.Stats] returns it.
type Stats struct {
	// Size is the image size in bytes.
	Size int64
	// BlockSize is the size of a block in bytes.
	BlockSize int
	// Blocks is the number of blocks; FreeBlocks of them are free.
	Blocks, FreeBlocks uint64
	// ReservedBlocks are the free blocks only root may use
	// (s_r_blocks_count, see [WithReservedPercent]).
	ReservedBlocks uint64
	// KernelReserved is the number of blocks the Linux kernel keeps for
	// itself when it mounts the image (s_resv_clusters: the smaller of
	// 2 % of the blocks and 4096).
	KernelReserved uint64
	// Inodes is the number of inodes; FreeInodes of them are free.
	Inodes, FreeInodes uint64
}

// Used returns the bytes in use: the size less the free blocks.
func (s Stats) Used() int64 { return int64(s.Blocks-s.FreeBlocks) * int64(s.BlockSize) }

// Available returns the bytes an ordinary user can write, as df shows
// them inside the mounted image: the free blocks less those reserved
// for root and for the kernel.
func (s Stats) Available() int64 {
	r := s.ReservedBlocks + s.KernelReserved
	if s.FreeBlocks < r {
		return 0
	}
	return int64(s.FreeBlocks-r) * int64(s.BlockSize)
}

// Stats describes the image written by Close; before a successful Close
// it returns the zero Stats.
func (w *Writer) Stats() Stats { return w.stats }

// kernelReserve returns s_resv_clusters as Linux computes it at mount
// (ext4_calculate_resv_clusters): 2 % of the blocks, at most 4096.
func kernelReserve(blocks uint64) uint64 { return min(blocks/50, 4096) }

// freeBlocks returns how many of nt blocks the bitmaps of layout l will
// show free; writeMeta counts the same.
func (l *layout) freeBlocks(nt uint64) uint64 {
	a := &l.alloc
	c := min(a.cursor, nt)
	free := nt - c
	for _, r := range a.free {
		if r.start < c {
			free += min(r.start+r.n, c) - r.start
		}
	}
	// each backup group's reserved descriptor room is free but for the
	// superblock and the descriptors in use
	for g := uint64(0); g*a.bpg < nt; g = nextBackup(g) {
		gs := g * a.bpg
		ge := min(gs+a.bpg, nt)
		rEnd := gs + min(1+a.gdtRes, ge-gs)
		if c > gs {
			free += min(rEnd, c) - gs
		}
		free -= min(1+l.gdtBlocks, ge-gs)
	}
	return free
}

// available returns the blocks an ordinary user may write in an image of
// nt blocks laid out as l.
func (w *Writer) available(l *layout, nt uint64) uint64 {
	r := kernelReserve(nt) + nt*uint64(w.o.reservedPct)/100
	free := l.freeBlocks(nt)
	if free < r {
		return 0
	}
	return free - r
}

// wantAvailable returns the blocks a computed image must leave available
// to ordinary users, given the blocks its content takes.
func (o *options) wantAvailable(content uint64) uint64 {
	var n uint64
	if o.freeSet {
		n = ceilDiv(uint64(o.freeSpace), blockSize) + ceilDiv(content*uint64(o.freePct), 100)
	} else {
		n = max(DefaultFreeSpace/blockSize, ceilDiv(content*DefaultFreePercent, 100))
	}
	return max(n, MinFreeSpace/blockSize)
}

// FormatSize writes a byte count the way sizes are typed on the command
// line, rounded up: 4096, 700K, 1229M, 13G, 2T.
func FormatSize(n int64) string {
	for _, u := range []struct {
		shift  uint
		suffix string
	}{{40, "T"}, {30, "G"}, {20, "M"}, {10, "K"}} {
		unit := int64(1) << u.shift
		// keep at least two significant digits, so 1.2G reads 1229M
		if n >= 10*unit || (n >= unit && n%unit == 0) {
			return strconv.FormatInt((n+unit-1)/unit, 10) + u.suffix
		}
	}
	return strconv.FormatInt(n, 10)
}

func sizeString(n int64) string {
	if s := FormatSize(n); s != strconv.FormatInt(n, 10) {
		return fmt.Sprintf("%s (%d bytes)", s, n)
	}
	return fmt.Sprintf("%d bytes", n)
}
