package ext4writer

import (
	"cmp"
	"errors"
	"os"
	"slices"
)

// ZeroRanger is implemented by destinations that can make a byte range
// read back zeros more cheaply than by writing zeros: a block device
// (BLKZEROOUT, discard with zeroing) or a sparse store. The writer calls
// it for blocks it wrote and then freed (a removed or replaced file), so
// that the finished image holds no deleted data. When the destination is
// an *os.File on a regular file, the writer punches holes instead
// (fallocate PUNCH_HOLE) and needs no ZeroRanger; any other destination
// gets zeros written.
type ZeroRanger interface {
	ZeroRange(off, n int64) error
}

// runSet is a set of blocks: sorted, non-overlapping, non-adjacent runs.
type runSet []run

// add adds the blocks of r.
func (s *runSet) add(r run) {
	if r.n == 0 {
		return
	}
	x := *s
	i, _ := slices.BinarySearchFunc(x, r.start, func(a run, b uint64) int { return cmp.Compare(a.start, b) })
	// merge with every run that overlaps or touches r
	j := i
	if i > 0 && x[i-1].start+x[i-1].n >= r.start {
		i--
	}
	end := r.start + r.n
	for j < len(x) && x[j].start <= end {
		end = max(end, x[j].start+x[j].n)
		j++
	}
	start := r.start
	if i < len(x) && i < j {
		start = min(start, x[i].start)
		end = max(end, x[i].start+x[i].n)
	}
	*s = slices.Replace(x, i, j, run{start, end - start})
}

// remove removes the blocks of r.
func (s *runSet) remove(r run) {
	x := *s
	end := r.start + r.n
	i, _ := slices.BinarySearchFunc(x, r.start, func(a run, b uint64) int { return cmp.Compare(a.start, b) })
	if i > 0 && x[i-1].start+x[i-1].n > r.start {
		i--
	}
	var keep []run
	j := i
	for ; j < len(x) && x[j].start < end; j++ {
		a := x[j]
		if a.start < r.start {
			keep = append(keep, run{a.start, r.start - a.start})
		}
		if ae := a.start + a.n; ae > end {
			keep = append(keep, run{end, ae - end})
		}
	}
	if i < j {
		*s = slices.Replace(x, i, j, keep...)
	}
}

// zeroDirty zeroes the freed blocks below limit that no later body
// overwrote. Metadata written afterwards may land on them.
func (w *Writer) zeroDirty(limit uint64) error {
	for _, r := range w.dirty {
		if r.start >= limit {
			break
		}
		r.n = min(r.n, limit-r.start)
		if err := w.zeroBlocks(r); err != nil {
			return err
		}
	}
	w.dirty = nil
	return nil
}

// zeroBlocks makes the blocks of r read back zeros.
func (w *Writer) zeroBlocks(r run) error {
	if w.overflow || r.n == 0 {
		return nil
	}
	off, n := int64(r.start)*blockSize, int64(r.n)*blockSize
	if w.zeroMode == zeroUnknown {
		w.zeroMode = zeroWrite
		switch f := w.f.(type) {
		case ZeroRanger:
			w.zeroMode = zeroRange
		case *os.File:
			if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() {
				w.zeroMode = zeroPunch
			}
		}
	}
	switch w.zeroMode {
	case zeroRange:
		return w.f.(ZeroRanger).ZeroRange(off, n)
	case zeroPunch:
		err := punchHole(w.f.(*os.File), off, n)
		if !errors.Is(err, errPunchUnsupported) {
			return err
		}
		w.zeroMode = zeroWrite
	}
	return w.writeZeros(off, n)
}

// How the writer makes freed blocks read back zeros.
const (
	zeroUnknown = iota
	zeroRange   // the destination's ZeroRange
	zeroPunch   // fallocate on a regular file
	zeroWrite   // writing zeros
)

// writeZeros writes n zero bytes at off.
func (w *Writer) writeZeros(off, n int64) error {
	if w.zeros == nil {
		w.zeros = make([]byte, min(n, pendMax))
	}
	for n > 0 {
		p := w.zeros[:min(n, int64(len(w.zeros)))]
		if _, err := w.f.WriteAt(p, off); err != nil {
			return err
		}
		off += int64(len(p))
		n -= int64(len(p))
	}
	return nil
}

// errPunchUnsupported reports a destination that cannot punch holes.
var errPunchUnsupported = errors.New("punching holes not supported")
