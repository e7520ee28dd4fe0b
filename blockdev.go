package img2ext4

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// headSize is the start of a block device that blockDevice holds back until the end: it
// holds the ext4 superblock, so a device whose writing stopped half way never carries a
// valid superblock, neither the old filesystem's nor the new one's.
const headSize = 4096

// blockDevice writes a filesystem into a block device in place. It is opened exclusively
// (O_EXCL: the kernel refuses while the device is mounted or claimed, and refuses mounts
// while it is open), remembers which ranges were written, and at the end makes every range
// that was not written read back zeros, as a new file would; nothing past the filesystem's
// size is touched. The first [headSize] bytes are wiped on the first write and written
// last, after everything else is synced.
//
// WriteAt may be called from several goroutines at once (artifact.Fetch does), at
// disjoint ranges; the other methods are for one goroutine, with no WriteAt running.
type blockDevice struct {
	f      *os.File
	path   string
	size   int64 // of the device
	fsSize int64 // of the filesystem: what finish zeroes up to
	off    int64 // for Write

	mu      sync.Mutex // guards what follows, for concurrent WriteAt calls
	head    [headSize]byte
	wiped   bool
	written spans
}

var _ outputFile = (*blockDevice)(nil)

// openBlockDevice refuses a device that is mounted, holds a mounted partition, is part of
// another device (LVM, RAID, dm-crypt), is active swap or is not writable, and otherwise
// opens it exclusively.
func openBlockDevice(path string) (*blockDevice, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return nil, err
	}
	if err := checkDeviceUnused(uint64(st.Rdev), path); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_RDWR|unix.O_EXCL|unix.O_CLOEXEC, 0)
	switch {
	case errors.Is(err, unix.EBUSY):
		return nil, errors.New("block device is in use (mounted, or claimed by the kernel)")
	case errors.Is(err, unix.EACCES), errors.Is(err, unix.EPERM), errors.Is(err, unix.EROFS):
		return nil, fmt.Errorf("block device is not writable: %w", errors.Unwrap(err))
	case err != nil:
		return nil, err
	}
	if ro, err := unix.IoctlGetInt(int(f.Fd()), unix.BLKROGET); err == nil && ro != 0 {
		f.Close()
		return nil, errors.New("block device is not writable: it is read-only")
	}
	size, err := unix.IoctlGetUint64(int(f.Fd()), unix.BLKGETSIZE64)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("block device size: %w", err)
	}
	return &blockDevice{f: f, path: path, size: int64(size), fsSize: int64(size)}, nil
}

// Close closes the device.
func (d *blockDevice) Close() error { return d.f.Close() }

// WriteAt writes p at off. Writes into the head are kept in memory until finish.
func (d *blockDevice) WriteAt(p []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(p)) > d.fsSize {
		return 0, fmt.Errorf("write %s at %d: past the end of the filesystem (%d bytes)", d.path, off, d.fsSize)
	}
	d.mu.Lock()
	if !d.wiped {
		// The old superblock goes before anything of the new filesystem is written.
		if err := d.wipe(); err != nil {
			d.mu.Unlock()
			return 0, err
		}
		d.wiped = true
	}
	n := 0
	if off < headSize {
		n = copy(d.head[off:], p)
	}
	d.mu.Unlock()
	if n < len(p) {
		m, err := d.f.WriteAt(p[n:], off+int64(n))
		d.mu.Lock()
		d.written.add(off+int64(n), off+int64(n+m))
		d.mu.Unlock()
		if err != nil {
			return n + m, err
		}
	}
	return len(p), nil
}

// wipe zeroes the head on the device and syncs.
func (d *blockDevice) wipe() error {
	if _, err := d.f.WriteAt(make([]byte, headSize), 0); err != nil {
		return err
	}
	return d.f.Sync()
}

// Write writes p at the current offset.
func (d *blockDevice) Write(p []byte) (int, error) {
	n, err := d.WriteAt(p, d.off)
	d.off += int64(n)
	return n, err
}

// ZeroRange makes [off, off+n) of the device read back zeros, discarding the blocks
// where the device can do so cheaply (BLKZEROOUT semantics through fallocate), writing
// zeros otherwise.
func (d *blockDevice) ZeroRange(off, n int64) error {
	if off < 0 || n < 0 || off+n > d.fsSize {
		return fmt.Errorf("zero %s at %d+%d: past the end of the filesystem", d.path, off, n)
	}
	end := off + n
	if off < headSize {
		clear(d.head[off:min(end, headSize)])
		off = min(end, headSize)
	}
	if off >= end {
		return nil
	}
	if err := d.zero(off, end); err != nil {
		return fmt.Errorf("zero %s at %d+%d: %w", d.path, off, n, err)
	}
	d.written.add(off, end)
	return nil
}

// zero makes [off, end) read back zeros.
func (d *blockDevice) zero(off, end int64) error {
	const page = 4096
	lo := min((off+page-1)/page*page, end)
	hi := max(end/page*page, lo)
	if err := d.writeZeros(off, lo); err != nil {
		return err
	}
	if hi > lo {
		fd := int(d.f.Fd())
		// A hole punched in a block device is zeroed by the device, or refused
		// (EOPNOTSUPP) when it would cost real writes; ZERO_RANGE then lets the kernel
		// write the zeros, and plain writes are the last resort.
		err := unix.Fallocate(fd, unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, lo, hi-lo)
		if err != nil {
			err = unix.Fallocate(fd, unix.FALLOC_FL_ZERO_RANGE|unix.FALLOC_FL_KEEP_SIZE, lo, hi-lo)
		}
		if err != nil {
			err = d.writeZeros(lo, hi)
		}
		if err != nil {
			return err
		}
	}
	return d.writeZeros(hi, end)
}

func (d *blockDevice) writeZeros(off, end int64) error {
	var buf []byte
	for off < end {
		n := min(end-off, 1<<20)
		if len(buf) < int(n) {
			buf = make([]byte, n)
		}
		if _, err := d.f.WriteAt(buf[:n], off); err != nil {
			return err
		}
		off += n
	}
	return nil
}

// finish zeroes what was never written below the filesystem's size, syncs, writes the
// head and syncs again.
func (d *blockDevice) finish() error {
	prev := int64(headSize)
	for _, s := range append(d.written.list(), span{d.fsSize, d.fsSize}) {
		if s.off > prev {
			if err := d.zero(prev, s.off); err != nil {
				return fmt.Errorf("zero unused blocks: %w", err)
			}
		}
		prev = max(prev, s.end)
	}
	if err := d.f.Sync(); err != nil {
		return err
	}
	if _, err := d.f.WriteAt(d.head[:min(headSize, d.fsSize)], 0); err != nil {
		return err
	}
	return d.f.Sync()
}

// span is the byte range [off, end).
type span struct{ off, end int64 }

// spans is a sorted set of disjoint, non-adjacent ranges.
type spans struct{ s []span }

// add merges [off, end) into the set.
func (ss *spans) add(off, end int64) {
	if off >= end {
		return
	}
	v := ss.s
	if n := len(v); n > 0 && off >= v[n-1].off && off <= v[n-1].end {
		v[n-1].end = max(v[n-1].end, end) // the usual case: appending
		return
	}
	i := sort.Search(len(v), func(i int) bool { return v[i].end >= off })
	j := i
	for j < len(v) && v[j].off <= end {
		off, end = min(off, v[j].off), max(end, v[j].end)
		j++
	}
	ss.s = slices.Replace(v, i, j, span{off, end})
}

func (ss *spans) list() []span { return ss.s }

// Where the kernel tells which block devices are in use; tests point them elsewhere.
var (
	sysBlock  = "/sys/dev/block"
	mountInfo = "/proc/self/mountinfo"
	procSwaps = "/proc/swaps"
)

// checkDeviceUnused refuses a device (major:minor in rdev, reached as path) that is
// mounted, has a mounted partition or is a partition of a mounted disk, is held by
// another block device, or is active swap.
func checkDeviceUnused(rdev uint64, path string) error {
	devs := []string{devName(rdev)}
	sys := filepath.Join(sysBlock, devs[0])
	if real, err := filepath.EvalSymlinks(sys); err == nil {
		sys = real // /sys/dev/block/M:m links to the device's directory
	}
	if _, err := os.Stat(filepath.Join(sys, "partition")); err == nil {
		// A partition: its disk is the parent directory in sysfs.
		if b, err := os.ReadFile(filepath.Join(filepath.Dir(sys), "dev")); err == nil {
			devs = append(devs, strings.TrimSpace(string(b)))
		}
	}
	if parts, err := filepath.Glob(filepath.Join(sys, "*", "partition")); err == nil {
		for _, p := range parts {
			if b, err := os.ReadFile(filepath.Join(filepath.Dir(p), "dev")); err == nil {
				devs = append(devs, strings.TrimSpace(string(b)))
			}
		}
	}
	mounts, err := mountedDevices()
	if err != nil {
		return fmt.Errorf("check whether the device is mounted: %w", err)
	}
	for _, dev := range devs {
		what := "block device"
		if dev != devs[0] {
			what = "block device " + dev + ", which shares the disk,"
		}
		if mp, ok := mounts[dev]; ok {
			return fmt.Errorf("%s is mounted at %s", what, mp)
		}
		if holders, _ := readDirNames(filepath.Join(sysBlock, dev, "holders"), -1); len(holders) > 0 {
			slices.Sort(holders)
			return fmt.Errorf("%s is in use by %s", what, strings.Join(holders, ", "))
		}
	}
	if real, err := filepath.EvalSymlinks(path); err == nil {
		if mp, ok := mounts[real]; ok {
			return fmt.Errorf("block device is mounted at %s", mp)
		}
	}
	if b, err := os.ReadFile(procSwaps); err == nil {
		for _, line := range strings.Split(string(b), "\n")[1:] {
			f := strings.Fields(line)
			var st unix.Stat_t
			if len(f) > 0 && unix.Stat(f[0], &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFBLK && slices.Contains(devs, devName(uint64(st.Rdev))) {
				return fmt.Errorf("block device %s is active swap", f[0])
			}
		}
	}
	return nil
}

func devName(rdev uint64) string {
	return strconv.FormatUint(uint64(unix.Major(rdev)), 10) + ":" + strconv.FormatUint(uint64(unix.Minor(rdev)), 10)
}

// mountedDevices maps the major:minor and the source path of every mounted filesystem
// (from /proc/self/mountinfo) to a mount point.
func mountedDevices() (map[string]string, error) {
	f, err := os.Open(mountInfo)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	m := map[string]string{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		// id parent major:minor root mountpoint options [optional...] - fstype source superoptions
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMount(fields[4])
		if _, ok := m[fields[2]]; !ok {
			m[fields[2]] = mp
		}
		if i := slices.Index(fields, "-"); i > 0 && i+2 < len(fields) && strings.HasPrefix(fields[i+2], "/") {
			if src, err := filepath.EvalSymlinks(unescapeMount(fields[i+2])); err == nil {
				if _, ok := m[src]; !ok {
					m[src] = mp
				}
			}
		}
	}
	return m, sc.Err()
}

// unescapeMount undoes the octal escapes (\040 for a space) of /proc/self/mountinfo.
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
