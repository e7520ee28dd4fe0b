package ext4writer

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
)

// emptyFiles returns n empty files spread over directories of 1000.
func emptyFiles(n int) []entry {
	ents := make([]entry, 0, n+n/1000+1)
	for i := range n {
		if i%1000 == 0 {
			ents = append(ents, entry{name: fmt.Sprintf("d%04d", i/1000), mode: 0o755 | os.ModeDir})
		}
		ents = append(ents, entry{name: fmt.Sprintf("d%04d/f%06d", i/1000, i), mode: 0o644})
	}
	return ents
}

// checkManyFiles builds the smallest image of n empty files and checks
// that its groups shrank as mke2fs -N shrinks them: the image is at most
// the inode tables, directories and journal it needs plus the kernel's
// reserve, 1 MiB, and slack%.
func checkManyFiles(t *testing.T, n int, slack int64) {
	img, st := buildStats(t, emptyFiles(n), WithFreeSpace(0))
	fsck(t, img)
	s := stats(t, img)
	bpg, _ := strconv.ParseInt(s["Blocks per group"], 10, 64)
	ipg, _ := strconv.ParseInt(s["Inodes per group"], 10, 64)
	t.Logf("%d files: %d MiB, %d blocks and %d inodes per group, %d groups", n, st.Size>>20, bpg, ipg, (int64(st.Blocks)+bpg-1)/bpg)
	if bpg >= 32768 || ipg > 32768 {
		t.Errorf("%d blocks and %d inodes per group: the groups did not shrink", bpg, ipg)
	}
	// 256-byte inodes, 16 bytes a directory entry, a 4 MiB journal (16 MiB
	// past 32768 blocks), the kernel's reserve and 1 MiB
	need := int64(st.Inodes)*256 + int64(n)*16 + 4<<20 + int64(st.KernelReserved)*blockSize + 1<<20
	if st.Blocks >= 32768 {
		need += 12 << 20
	}
	if st.Size > need+need*slack/100 {
		t.Errorf("%d files take %d bytes, want at most %d + %d%%", n, st.Size, need, slack)
	}
}

func TestGeometryManyFiles(t *testing.T) {
	needTools(t)
	if testing.Short() {
		t.Skip("short")
	}
	checkManyFiles(t, 200000, 5)
}

// TestGeometryMounted lets the kernel use an image with small groups:
// new files in every group, e2fsck clean afterwards.
func TestGeometryMounted(t *testing.T) {
	needTools(t)
	if os.Geteuid() != 0 {
		t.Skip("not root: skipping loop mount")
	}
	img, _ := buildStats(t, append(emptyFiles(70000), entry{name: "data", mode: 0o644, data: randData(5, 1<<20)}), WithFreeSpace(8<<20))
	if s := stats(t, img); s["Blocks per group"] == "32768" {
		t.Fatalf("groups did not shrink: %s blocks per group", s["Blocks per group"])
	}
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
	for i := range 200 { // Orlov spreads new directories over the groups
		d := filepath.Join(mnt, fmt.Sprintf("new%d", i))
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "f"), randData(uint64(i), 20000), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.RemoveAll(filepath.Join(mnt, "d0003")); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
		t.Fatalf("umount: %v: %s", err, out)
	}
	mounted = false
	fsck(t, img)
}

// TestGeometryDataInTheWay has bodies where smaller groups put their
// superblock backups: they are moved (read back from the image file),
// and read back whole.
func TestGeometryDataInTheWay(t *testing.T) {
	needTools(t)
	big := randData(6, 16<<20)
	ents := append([]entry{{name: "big", mode: 0o644, data: big}, {name: "small", mode: 0o644, data: randData(7, 9000)}}, emptyFiles(40000)...)
	ents[30000].probe = true // MinSize moves them once, Close again for the final groups
	ents = append(ents, entry{name: "late", mode: 0o644, data: randData(8, 3<<20)})
	img, st := buildStats(t, ents, WithFreeSpace(0))
	fsck(t, img)
	bpg := stats(t, img)["Blocks per group"]
	t.Logf("%d MiB, %s blocks per group", st.Size>>20, bpg)
	if bpg == "32768" || st.Size > 48<<20 {
		t.Errorf("%d MiB with %s blocks per group: the groups did not shrink", st.Size>>20, bpg)
	}
	dump := filepath.Join(t.TempDir(), "big")
	debugfs(t, img, "dump /big "+dump)
	if got, err := os.ReadFile(dump); err != nil || !bytes.Equal(got, big) {
		t.Errorf("big reads back %d bytes, differing: %v", len(got), err)
	}
	if os.Geteuid() == 0 {
		checkTree(t, ents, mountTree(t, img))
	}
	// a destination that cannot be read back keeps full-size groups
	m := &memWriterAt{}
	w, err := New(m, WithFreeSpace(0))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if err := addEntry(w, e); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "mem.img")
	if err := os.WriteFile(path, m.b, 0o644); err != nil {
		t.Fatal(err)
	}
	fsck(t, path)
}
