package writercmp

import (
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// entry is one file of a content, in the order it is written (parents first).
type entry struct {
	name                string // slash path relative to the root
	mode                fs.FileMode
	uid, gid            uint32
	atime, mtime, ctime time.Time
	size                int64  // regular files only
	linkname            string // symlink target
	hardlink            string // an earlier name this entry is a hard link to
	devmajor, devminor  uint32
	data                []byte // body of an in-memory regular file
	path                string // body of a regular file on disk
}

// content is one input, walked once per write by each writer.
type content struct {
	dir   string   // the same content materialised as a directory, for mkfs.ext4 -d
	bytes int64    // regular-file payload, for b.SetBytes
	mkfs  []string // extra mke2fs arguments and the image size
	each  func(fn func(*entry) error) error
}

var workDir string // shared scratch directory for materialised inputs

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "writercmp-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	workDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

var epoch = time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)

func fill(seed uint64, p []byte) {
	var s [32]byte
	s[0] = byte(seed)
	s[1] = byte(seed >> 8)
	rand.NewChaCha8(s).Read(p)
	for i := range p {
		p[i] |= 1 // no zero blocks for the writers to punch out
	}
}

func sliceEach(es []entry) func(fn func(*entry) error) error {
	return func(fn func(*entry) error) error {
		for i := range es {
			if err := fn(&es[i]); err != nil {
				return err
			}
		}
		return nil
	}
}

// materialise writes es under dir once, outside any timing.
func materialise(dir string, es []entry) error {
	for i := range es {
		e := &es[i]
		p := filepath.Join(dir, filepath.FromSlash(e.name))
		if e.mode.IsDir() {
			if err := os.Mkdir(p, e.mode.Perm()); err != nil {
				return err
			}
		} else if err := os.WriteFile(p, e.data, e.mode.Perm()); err != nil {
			return err
		}
	}
	for i := len(es) - 1; i >= 0; i-- { // children before parents, so dir times stick
		p := filepath.Join(dir, filepath.FromSlash(es[i].name))
		if err := os.Chtimes(p, es[i].atime, es[i].mtime); err != nil {
			return err
		}
	}
	return nil
}

var (
	smallOnce sync.Once
	small     *content
	smallErr  error
)

// smallFiles is content A: 100,000 files of 100 to 200 bytes in one directory.
func smallFiles(b *testing.B) *content {
	smallOnce.Do(func() {
		const n = 100000
		pool := make([]byte, n*200)
		fill(1, pool)
		es := make([]entry, 0, n+1)
		es = append(es, entry{name: "d", mode: fs.ModeDir | 0o755, atime: epoch, mtime: epoch, ctime: epoch})
		var total int64
		for i := range n {
			size := 100 + i%101
			es = append(es, entry{
				name: fmt.Sprintf("d/file-%06d", i), mode: 0o644,
				atime: epoch, mtime: epoch, ctime: epoch,
				size: int64(size), data: pool[i*200 : i*200+size],
			})
			total += int64(size)
		}
		dir := filepath.Join(workDir, "small")
		if smallErr = os.Mkdir(dir, 0o755); smallErr != nil {
			return
		}
		if smallErr = materialise(dir, es); smallErr != nil {
			return
		}
		// mke2fs's default of one inode per 16 KiB would give too few.
		small = &content{dir: dir, bytes: total, mkfs: []string{"-N", "110000", "600M"}, each: sliceEach(es)}
	})
	if smallErr != nil {
		b.Fatal(smallErr)
	}
	return small
}

var (
	bigOnce sync.Once
	big     *content
	bigData []byte
	bigErr  error
)

// bigFile is content B: one 1 GiB file of deterministic non-zero data.
func bigFile(b *testing.B) *content {
	bigOnce.Do(func() {
		bigData = make([]byte, 1<<30)
		fill(2, bigData)
		es := []entry{{name: "big", mode: 0o644, atime: epoch, mtime: epoch, ctime: epoch, size: int64(len(bigData)), data: bigData}}
		dir := filepath.Join(workDir, "big")
		if bigErr = os.Mkdir(dir, 0o755); bigErr != nil {
			return
		}
		if bigErr = materialise(dir, es); bigErr != nil {
			return
		}
		big = &content{dir: dir, bytes: int64(len(bigData)), mkfs: []string{"1200M"}, each: sliceEach(es)}
	})
	if bigErr != nil {
		b.Fatal(bigErr)
	}
	return big
}

// debian is content C: a debootstrap --variant=minbase tree, walked and read
// on every write (as mkfs.ext4 -d does).
func debian(b *testing.B) *content {
	root := os.Getenv("WRITERCMP_ROOTFS")
	if root == "" {
		root = filepath.Join("..", "out", "work", "base")
	}
	if _, err := os.Stat(filepath.Join(root, "etc", "debian_version")); err != nil {
		b.Skipf("no Debian rootfs at %s (run bench/build-image.sh or set WRITERCMP_ROOTFS): %v", root, err)
	}
	c := &content{dir: root, mkfs: []string{"400M"}}
	c.each = func(fn func(*entry) error) error { return walkTree(root, fn) }
	if err := c.each(func(e *entry) error {
		if e.path != "" {
			c.bytes += e.size
		}
		return nil
	}); err != nil {
		b.Fatal(err)
	}
	return c
}

// walkTree calls fn for everything below root in lexical order, parents
// first. Regular files carry their path; later names of a hard-linked file
// carry the first name instead.
func walkTree(root string, fn func(*entry) error) error {
	links := make(map[[2]uint64]string)
	var e entry
	return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == root {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return fmt.Errorf("walk %s: no stat", p)
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		e = entry{
			name: filepath.ToSlash(rel), mode: fi.Mode(), uid: st.Uid, gid: st.Gid,
			atime: time.Unix(st.Atim.Unix()), mtime: time.Unix(st.Mtim.Unix()), ctime: time.Unix(st.Ctim.Unix()),
		}
		switch m := fi.Mode(); {
		case m.IsRegular():
			key := [2]uint64{st.Dev, st.Ino}
			if first, ok := links[key]; ok {
				e.hardlink = first
				break
			}
			if st.Nlink > 1 {
				links[key] = e.name
			}
			e.size, e.path = fi.Size(), p
		case m&fs.ModeSymlink != 0:
			if e.linkname, err = os.Readlink(p); err != nil {
				return err
			}
		case m&fs.ModeDevice != 0:
			e.devmajor, e.devminor = unix.Major(st.Rdev), unix.Minor(st.Rdev)
		}
		return fn(&e)
	})
}

// body opens a regular file's contents; the caller closes it.
func body(e *entry) (io.ReadCloser, error) {
	if e.path != "" {
		return os.Open(e.path)
	}
	return io.NopCloser(bytes.NewReader(e.data)), nil
}
