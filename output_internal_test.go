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
