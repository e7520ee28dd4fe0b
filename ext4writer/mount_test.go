package ext4writer

import (
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// mountTree mounts img read-only through a loop device and reads the
// tree back through the kernel. It skips the test unless running as root
// with a working mount.
func mountTree(t *testing.T, img string) map[string]*node {
	t.Helper()
	var tree map[string]*node
	mountCheck(t, img, func(mnt string) { tree = walkTree(t, mnt) })
	return tree
}

// mountCheck mounts img read-only at a temporary directory for the
// duration of fn. It skips the test unless running as root with a
// working loop mount.
func mountCheck(t *testing.T, img string, fn func(mnt string)) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("not root: skipping loop mount")
	}
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-o", "ro,loop", img, mnt).CombinedOutput(); err != nil {
		t.Skipf("mount failed: %v: %s", err, out)
	}
	defer func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount: %v: %s", err, out)
		}
	}()
	fn(mnt)
}

func walkTree(t *testing.T, mnt string) map[string]*node {
	tree := map[string]*node{}
	err := filepath.WalkDir(mnt, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(mnt, p)
		var sx unix.Statx_t
		if err := unix.Statx(unix.AT_FDCWD, p, unix.AT_SYMLINK_NOFOLLOW, unix.STATX_ALL|unix.STATX_BTIME, &sx); err != nil {
			return err
		}
		n := &node{
			ino: int(sx.Ino), mode: uint32(sx.Mode), uid: sx.Uid, gid: sx.Gid, size: int64(sx.Size), links: int(sx.Nlink),
			times: map[string][2]int64{
				"atime":  {sx.Atime.Sec, int64(sx.Atime.Nsec)},
				"mtime":  {sx.Mtime.Sec, int64(sx.Mtime.Nsec)},
				"ctime":  {sx.Ctime.Sec, int64(sx.Ctime.Nsec)},
				"crtime": {sx.Btime.Sec, int64(sx.Btime.Nsec)},
			},
			dev: [2]uint32{sx.Rdev_major, sx.Rdev_minor},
		}
		switch n.mode & unix.S_IFMT {
		case unix.S_IFREG:
			if n.sum, err = fileSum(p); err != nil {
				return err
			}
		case unix.S_IFLNK:
			if n.link, err = os.Readlink(p); err != nil {
				return err
			}
		}
		sz, err := unix.Llistxattr(p, nil)
		if err != nil {
			return err
		}
		if sz > 0 {
			buf := make([]byte, sz)
			sz, err = unix.Llistxattr(p, buf)
			if err != nil {
				return err
			}
			n.xattrs = map[string]string{}
			for _, name := range strings.Split(strings.TrimRight(string(buf[:sz]), "\x00"), "\x00") {
				vs, err := unix.Lgetxattr(p, name, nil)
				if err != nil {
					return err
				}
				v := make([]byte, vs)
				if vs > 0 {
					if vs, err = unix.Lgetxattr(p, name, v); err != nil {
						return err
					}
				}
				n.xattrs[name] = string(v[:vs])
			}
		}
		tree[rel] = n
		return nil
	})
	if err != nil {
		t.Fatalf("walk mounted image: %v", err)
	}
	return tree
}

func TestMountAllTypes(t *testing.T) {
	needTools(t)
	ents := allTypes()
	for _, tc := range []struct {
		name string
		opts []Option
	}{
		{"default", nil},
		{"legacy", []Option{WithLegacy()}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img := buildImage(t, ents, tc.opts...)
			checkTree(t, ents, mountTree(t, img))
		})
	}
}

// TestMountReadWrite lets the kernel use the image read-write (journal,
// allocators, htree splits, xattr changes) and checks e2fsck still finds
// it clean afterwards.
func TestMountReadWrite(t *testing.T) {
	needTools(t)
	if os.Geteuid() != 0 {
		t.Skip("not root")
	}
	ents := append(allTypes(), bigDirEntries(5000)...)
	for _, tc := range []struct {
		name string
		opts []Option
	}{
		{"default", []Option{WithFreeSpace(32 << 20)}},
		{"legacy", []Option{WithLegacy(), WithFreeSpace(32 << 20)}},
		{"fixed-1G", []Option{WithSize(1 << 30)}}, // 8 groups, most INODE_UNINIT with hole bitmaps
	} {
		t.Run(tc.name, func(t *testing.T) {
			img := buildImage(t, ents, tc.opts...)
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
			for i := range 1500 {
				if err := os.WriteFile(filepath.Join(mnt, "d", "new-"+strings.Repeat("x", i%50)+string(rune('a'+i%26))+strings.Repeat("y", i/26)), []byte("data"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			for i := range 64 { // Orlov spreads new directories over the groups
				d := filepath.Join(mnt, fmt.Sprintf("newdir%d", i))
				if err := os.Mkdir(d, 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(d, "f"), make([]byte, 70000), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if err := os.RemoveAll(filepath.Join(mnt, "bin")); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(mnt, "grow"), make([]byte, 8<<20), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := unix.Setxattr(filepath.Join(mnt, "x"), "user.added", []byte("new value"), 0); err != nil {
				t.Fatal(err)
			}
			if err := unix.Removexattr(filepath.Join(mnt, "x"), "user.attra"); err != nil {
				t.Fatal(err)
			}
			if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
				t.Fatalf("umount: %v: %s", err, out)
			}
			mounted = false
			fsck(t, img)
		})
	}
}
