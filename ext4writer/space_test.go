package ext4writer

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"golang.org/x/sys/unix"
)

// buildStats writes entries into a new image file and returns its path
// and the writer's Stats.
func buildStats(t *testing.T, ents []entry, opts ...Option) (string, Stats) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "img.ext4")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := writeEntries(t, f, ents, opts...)
	if w.planFree != w.stats.FreeBlocks {
		t.Errorf("sizing counted %d free blocks, the bitmaps hold %d", w.planFree, w.stats.FreeBlocks)
	}
	return path, w.Stats()
}

func contentEntries(n int) []entry {
	var ents []entry
	for i := range n {
		ents = append(ents, entry{name: fmt.Sprintf("f%d", i), mode: 0o644, data: randData(uint64(i), 1<<20)})
	}
	return append(ents, entry{name: "d", mode: 0o755 | os.ModeDir}, entry{name: "d/small", mode: 0o644, data: []byte("small")})
}

// TestFreeSpacePolicy checks what an image of computed size leaves
// available, as debugfs reads the superblock and as df would compute
// it: free blocks less root's reserve less the kernel's.
func TestFreeSpacePolicy(t *testing.T) {
	needTools(t)
	const mib = 1 << 20
	ents := contentEntries(8)
	for _, tc := range []struct {
		name     string
		opts     []Option
		min, max int64 // available bytes
		reserved int   // percent
	}{
		{"default", nil, 64 * mib, 65 * mib, 0},
		{"legacy", []Option{WithLegacy()}, 64 * mib, 65 * mib, 0},
		{"reserved-5", []Option{WithReservedPercent(5)}, 64 * mib, 65 * mib, 5},
		{"free-0", []Option{WithFreeSpace(0)}, 1 * mib, 2 * mib, 0},
		{"free-0-nojournal", []Option{WithFreeSpace(0), WithoutJournal()}, 1 * mib, 2 * mib, 0},
		{"free-100M", []Option{WithFreeSpace(100 * mib)}, 100 * mib, 101 * mib, 0},
		{"percent-50", []Option{WithFreePercent(50)}, 4 * mib, 5 * mib, 0},
		{"both", []Option{WithFreePercent(50), WithFreeSpace(10 * mib)}, 14 * mib, 15 * mib, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img, st := buildStats(t, ents, tc.opts...)
			fsck(t, img)
			s := stats(t, img)
			for k, v := range map[string]uint64{
				"Block count": st.Blocks, "Free blocks": st.FreeBlocks, "Reserved block count": st.ReservedBlocks,
				"Inode count": st.Inodes, "Free inodes": st.FreeInodes,
			} {
				if got, _ := strconv.ParseUint(s[k], 10, 64); got != v {
					t.Errorf("debugfs says %s %s, Stats %d", k, s[k], v)
				}
			}
			if want := st.Blocks * uint64(tc.reserved) / 100; st.ReservedBlocks != want {
				t.Errorf("reserved blocks %d, want %d", st.ReservedBlocks, want)
			}
			if fi, _ := os.Stat(img); fi.Size() != st.Size {
				t.Errorf("image is %d bytes, Stats says %d", fi.Size(), st.Size)
			}
			avail := int64(st.FreeBlocks-st.ReservedBlocks-min(st.Blocks/50, 4096)) * blockSize
			if avail != st.Available() || avail < tc.min || avail >= tc.max {
				t.Errorf("available %d (Stats %d), want [%d, %d)", avail, st.Available(), tc.min, tc.max)
			}
		})
	}
}

// TestWantAvailable covers the share of a large content, which the
// images above are too small to reach.
func TestWantAvailable(t *testing.T) {
	for _, tc := range []struct {
		name    string
		opts    []Option
		content uint64 // blocks
		want    uint64
	}{
		{"small", nil, 1000, 64 << 20 / blockSize},
		{"ten-percent", nil, 1 << 20, 1<<20/10 + 1},
		{"free-0", []Option{WithFreeSpace(0)}, 1 << 20, 256},
		{"percent", []Option{WithFreePercent(20)}, 1000, 256},
		{"percent-large", []Option{WithFreePercent(20)}, 100000, 20000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o, err := makeOptions(tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			if got := o.wantAvailable(tc.content); got != tc.want {
				t.Errorf("wantAvailable(%d) = %d, want %d", tc.content, got, tc.want)
			}
		})
	}
}

func TestFormatSize(t *testing.T) {
	for n, want := range map[int64]string{
		4096: "4K", 5000: "5000", 10 << 10: "10K", 1288490189: "1229M", 2 << 30: "2G", 13<<30 - 5: "13G", 3 << 40: "3T",
		64 << 20: "64M", 64<<20 + 1: "65M",
	} {
		if got := FormatSize(n); got != want {
			t.Errorf("FormatSize(%d) = %q, want %q", n, got, want)
		}
	}
}

// TestMountWritable mounts images of computed size read-write: df shows
// the space promised to ordinary users, root can fill most of it, and
// even the smallest image takes a small write.
func TestMountWritable(t *testing.T) {
	needTools(t)
	if os.Geteuid() != 0 {
		t.Skip("not root: skipping loop mount")
	}
	const mib = 1 << 20
	for _, tc := range []struct {
		name  string
		opts  []Option
		avail int64 // at least, for ordinary users
		write int64 // bytes root writes
	}{
		{"default", nil, 64 * mib, 60 * mib},
		{"free-0", []Option{WithFreeSpace(0)}, 1 * mib, 64 << 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img, st := buildStats(t, contentEntries(4), tc.opts...)
			mnt := t.TempDir()
			if out, err := exec.Command("mount", "-o", "loop", img, mnt).CombinedOutput(); err != nil {
				t.Skipf("mount failed: %v: %s", err, out)
			}
			mounted := true
			defer func() {
				if mounted {
					exec.Command("umount", mnt).Run()
				}
			}()
			var sfs unix.Statfs_t
			if err := unix.Statfs(mnt, &sfs); err != nil {
				t.Fatal(err)
			}
			avail := int64(sfs.Bavail) * sfs.Bsize
			t.Logf("df: %d bytes available, Stats says %d", avail, st.Available())
			if avail < tc.avail || avail != st.Available() {
				t.Errorf("df shows %d bytes available, want >= %d and what Stats says, %d", avail, tc.avail, st.Available())
			}
			chunk := randData(99, 1*mib)
			for i := int64(0); i*mib < tc.write; i++ {
				n := min(int64(len(chunk)), tc.write-i*mib)
				if err := os.WriteFile(filepath.Join(mnt, fmt.Sprintf("new%d", i)), chunk[:n], 0o644); err != nil {
					t.Fatalf("after %d bytes: %v", i*mib, err)
				}
			}
			unix.Sync() // writeback happens now: ENOSPC there would be EIO in a guest
			if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
				t.Fatalf("umount: %v: %s", err, out)
			}
			mounted = false
			fsck(t, img)
		})
	}
}
