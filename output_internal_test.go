package img2ext4

import (
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"testing"

	"golang.org/x/sys/unix"
)

// TestSpans checks the written-range set against a bitmap of the same writes.
func TestSpans(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 200 {
		var ss spans
		bits := make([]bool, 300)
		for range rng.IntN(40) {
			off := rng.IntN(290)
			end := off + rng.IntN(300-off)
			if rng.IntN(3) == 0 && len(ss.s) > 0 { // mostly appending, as the writer does
				off = int(ss.s[len(ss.s)-1].end)
				end = min(off+rng.IntN(10), 300)
			}
			ss.add(int64(off), int64(end))
			for i := off; i < end; i++ {
				bits[i] = true
			}
		}
		var want []span
		for i := 0; i < len(bits); i++ {
			if bits[i] {
				j := i
				for j < len(bits) && bits[j] {
					j++
				}
				want = append(want, span{int64(i), int64(j)})
				i = j
			}
		}
		if !slices.Equal(ss.list(), want) {
			t.Fatalf("round %d: got %v, want %v", round, ss.list(), want)
		}
	}
}

func TestUnescapeMount(t *testing.T) {
	for in, want := range map[string]string{`/mnt/a\040b`: "/mnt/a b", `/x\134y`: `/x\y`, `/plain`: "/plain", `/end\04`: `/end\04`} {
		if got := unescapeMount(in); got != want {
			t.Errorf("unescapeMount(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestRemoveStale removes the temporary outputs of dead writers only: not one whose PID
// runs, not one whose writer holds its lock, not another output's.
func TestRemoveStale(t *testing.T) {
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Skipf("cannot run true: %v", err)
	}
	deadPID := strconv.Itoa(dead.Process.Pid)
	dir := t.TempDir()
	out := filepath.Join(dir, "out.img")
	names := map[string]bool{ // name: removed
		".out.img.img2ext4-" + deadPID + "-1":                   true,
		".out.img.img2ext4-" + strconv.Itoa(os.Getpid()) + "-2": false, // alive
		".out.img.img2ext4-" + deadPID + "-3":                   false, // locked below
		".other.img2ext4-" + deadPID + "-4":                     false, // another output's
		".out.img.img2ext4-x":                                   false, // no PID: not ours to judge
		"out.img":                                               false,
	}
	for n := range names {
		os.WriteFile(filepath.Join(dir, n), nil, 0o644)
	}
	os.Mkdir(filepath.Join(dir, ".out.img.img2ext4-"+deadPID+"-5"), 0o755)
	os.WriteFile(filepath.Join(dir, ".out.img.img2ext4-"+deadPID+"-5", "f"), nil, 0o644)
	names[".out.img.img2ext4-"+deadPID+"-5"] = true // a directory output's
	locked, err := os.Open(filepath.Join(dir, ".out.img.img2ext4-"+deadPID+"-3"))
	if err != nil {
		t.Fatal(err)
	}
	defer locked.Close()
	if err := unix.Flock(int(locked.Fd()), unix.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	removeStale(dir, out)
	for n, removed := range names {
		_, err := os.Lstat(filepath.Join(dir, n))
		if gone := err != nil; gone != removed {
			t.Errorf("%s: removed %v, want %v", n, gone, removed)
		}
	}
}

// TestDeviceInUse checks the refusal rules over a sysfs and mountinfo laid out as the
// kernel lays them out (links from /sys/dev/block to device directories, partitions as
// subdirectories): the kernel here cannot make partitions of a loop device, and
// device-mapper holders need tools this machine lacks, so TestBlockDevice cannot reach
// these cases with real devices.
func TestDeviceInUse(t *testing.T) {
	root := t.TempDir()
	devices := filepath.Join(root, "devices")
	mk := func(dir, dev string, partition bool, holders ...string) {
		os.MkdirAll(filepath.Join(devices, dir, "holders"), 0o755)
		os.WriteFile(filepath.Join(devices, dir, "dev"), []byte(dev+"\n"), 0o644)
		if partition {
			os.WriteFile(filepath.Join(devices, dir, "partition"), []byte("1\n"), 0o644)
		}
		for _, h := range holders {
			os.Mkdir(filepath.Join(devices, dir, "holders", h), 0o755)
		}
	}
	mk("sda", "8:0", false)
	mk("sda/sda1", "8:1", true)
	mk("sda/sda2", "8:2", true, "dm-0")
	mk("sdb", "8:16", false)
	mk("sdb/sdb1", "8:17", true)
	mk("sdc", "8:32", false)
	mk("sdd", "8:48", false, "md0")
	sys := filepath.Join(root, "dev-block")
	os.Mkdir(sys, 0o755)
	for _, d := range []struct{ dev, dir string }{{"8:0", "sda"}, {"8:1", "sda/sda1"}, {"8:2", "sda/sda2"}, {"8:16", "sdb"}, {"8:17", "sdb/sdb1"}, {"8:32", "sdc"}, {"8:48", "sdd"}} {
		os.Symlink(filepath.Join("..", "devices", d.dir), filepath.Join(sys, d.dev))
	}
	mi := filepath.Join(root, "mountinfo")
	os.WriteFile(mi, []byte("21 26 0:20 / /proc rw,relatime - proc proc rw\n"+
		"30 26 8:1 / /mnt/my\\040disk rw,relatime - ext4 /dev/sda1 rw\n"+
		"31 26 8:16 / /srv rw - ext4 /dev/sdb rw\n"), 0o644)
	swaps := filepath.Join(root, "swaps")
	os.WriteFile(swaps, []byte("Filename\tType\tSize\tUsed\tPriority\n"), 0o644)
	defer func(a, b, c string) { sysBlock, mountInfo, procSwaps = a, b, c }(sysBlock, mountInfo, procSwaps)
	sysBlock, mountInfo, procSwaps = sys, mi, swaps

	for _, tc := range []struct {
		dev  uint64
		want string
	}{
		{unix.Mkdev(8, 1), "block device is mounted at /mnt/my disk"},
		{unix.Mkdev(8, 0), "block device 8:1, which shares the disk, is mounted at /mnt/my disk"},
		{unix.Mkdev(8, 2), "block device is in use by dm-0"},
		{unix.Mkdev(8, 17), "block device 8:16, which shares the disk, is mounted at /srv"},
		{unix.Mkdev(8, 48), "block device is in use by md0"},
		{unix.Mkdev(8, 32), ""},
	} {
		err := checkDeviceUnused(tc.dev, "/nonexistent")
		if (err == nil) != (tc.want == "") || err != nil && err.Error() != tc.want {
			t.Errorf("%s: %v, want %q", devName(tc.dev), err, tc.want)
		}
	}
}
