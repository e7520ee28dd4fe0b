package ext4writer

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"

	"golang.org/x/sys/unix"
)

var fileACLRe = regexp.MustCompile(`File ACL: (\d+)`)

// TestSharedXattrBlocks gives many files the same attributes, too large
// for the inode: they share one block (a new one past the kernel's 1024
// references), files with other values get their own, and e2fsck, which
// counts the references, finds the image clean.
func TestSharedXattrBlocks(t *testing.T) {
	needTools(t)
	big := func(v byte) map[string][]byte {
		return map[string][]byte{
			"user.big":                bytes.Repeat([]byte{v}, 600),
			"system.posix_acl_access": acl([3]uint32{0x01, 0, 7}, [3]uint32{0x02, 1000, 5}, [3]uint32{0x04, 0, 5}, [3]uint32{0x10, 0, 7}, [3]uint32{0x20, 0, 4}),
		}
	}
	const n = 1100
	var ents []entry
	for i := range n {
		ents = append(ents, entry{name: fmt.Sprintf("f%04d", i), mode: 0o644, data: []byte("x"), xattrs: big('a')})
	}
	ents = append(ents,
		entry{name: "other", mode: 0o644, xattrs: big('b')},
		entry{name: "dir", mode: 0o755 | os.ModeDir, xattrs: big('a')},
		entry{name: "f0005", remove: true})
	img, _ := buildStats(t, ents, WithFreeSpace(0))
	fsck(t, img)
	var cmds []string
	for i := range n {
		if i != 5 {
			cmds = append(cmds, fmt.Sprintf("stat /f%04d", i))
		}
	}
	cmds = append(cmds, "stat /other", "stat /dir")
	blocks := map[string]int{}
	for _, m := range fileACLRe.FindAllStringSubmatch(debugfs(t, img, cmds...), -1) {
		blocks[m[1]]++
	}
	// 1099 + dir share 'a' blocks: 1024 and 76; other has its own
	if len(blocks) != 3 || len(fileACLRe.FindAllString(debugfs(t, img, cmds...), -1)) != n+1 {
		t.Fatalf("attribute blocks and their users: %v", blocks)
	}
	counts := map[int]bool{}
	for _, c := range blocks {
		counts[c] = true
	}
	if !counts[1024] || !counts[76] || !counts[1] {
		t.Errorf("attribute blocks shared %v times, want 1024, 76 and 1", blocks)
	}
	for name, want := range map[string]map[string][]byte{"f0001": big('a'), "f1099": big('a'), "other": big('b')} {
		out := debugfs(t, img, "ea_get /"+name+" user.big")
		if !bytes.Contains([]byte(out), want["user.big"][:100]) {
			t.Errorf("%s: user.big reads %q", name, out[:min(len(out), 80)])
		}
	}
	if os.Geteuid() != 0 {
		return
	}
	// the kernel reads them, and copies a shared block on write
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-o", "loop", img, mnt).CombinedOutput(); err != nil {
		t.Skipf("mount failed: %v: %s", err, out)
	}
	v := make([]byte, 700)
	sz, err := unix.Getxattr(filepath.Join(mnt, "f0100"), "user.big", v)
	if err != nil || !bytes.Equal(v[:sz], big('a')["user.big"]) {
		t.Errorf("kernel reads user.big as %d bytes, %v", sz, err)
	}
	if err := unix.Setxattr(filepath.Join(mnt, "f0100"), "user.big", []byte("changed"), 0); err != nil {
		t.Error(err)
	}
	if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
		t.Fatalf("umount: %v: %s", err, out)
	}
	fsck(t, img)
}
