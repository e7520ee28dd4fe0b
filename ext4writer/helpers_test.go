package ext4writer

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// entry is a test description of one file.
type entry struct {
	name     string
	mode     fs.FileMode
	uid, gid uint32
	mtime    time.Time
	atime    time.Time
	ctime    time.Time
	crtime   time.Time
	data     []byte // regular file content
	size     int64  // if > len(data): data followed by zeros (sparse)
	tail     []byte // written at the end of a sparse file
	link     string // symlink target
	hardlink string // hard link to this earlier name
	remove   bool   // remove name instead of creating it
	probe    bool   // call MinSize before this entry
	major    uint32
	minor    uint32
	xattrs   map[string][]byte
}

func needTools(t testing.TB) {
	t.Helper()
	for _, tool := range []string{"e2fsck", "debugfs"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not found: %v", tool, err)
		}
	}
}

// buildImage writes entries into a new image file and returns its path.
func buildImage(t testing.TB, ents []entry, opts ...Option) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "img.ext4")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	writeEntries(t, f, ents, opts...)
	return path
}

// writeEntries writes entries into a new image on f and returns the closed writer.
func writeEntries(t testing.TB, f io.WriterAt, ents []entry, opts ...Option) *Writer {
	t.Helper()
	w, err := New(f, opts...)
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
	return w
}

func addEntry(w *Writer, e entry) error {
	if e.probe {
		if _, err := w.MinSize(); err != nil {
			return err
		}
	}
	if e.remove {
		return w.Remove(e.name)
	}
	if e.hardlink != "" {
		return w.Link(e.hardlink, e.name)
	}
	f := &File{Mode: e.mode, UID: e.uid, GID: e.gid, Mtime: e.mtime, Atime: e.atime, Ctime: e.ctime, Crtime: e.crtime,
		Linkname: e.link, Devmajor: e.major, Devminor: e.minor, Xattrs: e.xattrs}
	if e.mode.IsRegular() {
		f.Size = max(e.size, int64(len(e.data)))
	}
	if err := w.Create(e.name, f); err != nil {
		return err
	}
	if !e.mode.IsRegular() {
		return nil
	}
	if e.size > int64(len(e.data)) {
		// data, then zeros, then tail at the end
		if _, err := w.Write(e.data); err != nil {
			return err
		}
		zeros := make([]byte, 1<<20)
		rest := e.size - int64(len(e.data)) - int64(len(e.tail))
		for rest > 0 {
			n := min(rest, int64(len(zeros)))
			if _, err := w.Write(zeros[:n]); err != nil {
				return err
			}
			rest -= n
		}
		_, err := w.Write(e.tail)
		return err
	}
	_, err := w.ReadFrom(bytes.NewReader(e.data))
	return err
}

// fsck runs e2fsck -fn and fails the test unless it exits 0.
func fsck(t testing.TB, img string) {
	t.Helper()
	out, err := exec.Command("e2fsck", "-fn", img).CombinedOutput()
	if err != nil {
		t.Fatalf("e2fsck -fn %s: %v\n%s", img, err, out)
	}
}

// fsckFix runs e2fsck -fy on a copy and checks it changed nothing.
func fsckFix(t testing.TB, img string) {
	t.Helper()
	data, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	cp := img + ".fy"
	if err := os.WriteFile(cp, data, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("e2fsck", "-fy", cp).CombinedOutput()
	if err != nil {
		t.Fatalf("e2fsck -fy: %v\n%s", err, out)
	}
	after, err := os.ReadFile(cp)
	if err != nil {
		t.Fatal(err)
	}
	// e2fsck -fy stamps the write and last-check times into the primary
	// superblock (and so its checksum); everything else must be unchanged.
	for _, b := range [][]byte{data, after} {
		if len(b) >= 2048 {
			clear(b[1024+0x30 : 1024+0x34])
			clear(b[1024+0x40 : 1024+0x44])
			clear(b[1024+0x3FC : 1024+0x400])
		}
	}
	if !bytes.Equal(data, after) {
		t.Fatalf("e2fsck -fy changed the image\n%s", out)
	}
	os.Remove(cp)
}

func debugfs(t testing.TB, img string, cmds ...string) string {
	t.Helper()
	cf := filepath.Join(t.TempDir(), "cmds")
	if err := os.WriteFile(cf, []byte(strings.Join(cmds, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("debugfs", "-f", cf, img).Output()
	if err != nil {
		t.Fatalf("debugfs: %v", err)
	}
	return string(out)
}

// node is what the oracle reads back for one path.
type node struct {
	ino      int
	mode     uint32 // full i_mode
	uid, gid uint32
	size     int64
	links    int
	times    map[string][2]int64 // ctime/atime/mtime/crtime: seconds, nanoseconds
	dev      [2]uint32
	link     string
	sum      string // sha256 of content
	xattrs   map[string]string
}

var (
	statInodeRe = regexp.MustCompile(`Inode: (\d+)\s+Type: \S+\s+Mode:\s+(\d+)`)
	statUserRe  = regexp.MustCompile(`User:\s+(\d+)\s+Group:\s+(\d+).*Size: (\d+)`)
	statLinksRe = regexp.MustCompile(`Links: (\d+)`)
	statTimeRe  = regexp.MustCompile(`(?m)^\s*(ctime|atime|mtime|crtime): 0x([0-9a-f]+):([0-9a-f]+)`)
	statDevRe   = regexp.MustCompile(`Device major/minor number: (\d+):(\d+)`)
	statFastRe  = regexp.MustCompile(`Fast link dest: "(.*)"`)
	eaNameRe    = regexp.MustCompile(`(?m)^\s+(\S+) \((\d+)\)`)
	lsRe        = regexp.MustCompile(`^/(\d+)/(\d+)/(\d+)/(\d+)/(.*)/(\d*)/$`)
)

// readTree reads the whole tree back with debugfs (ls -p, stat, ea_list,
// ea_get, rdump) and returns it keyed by path ("." is the root).
func readTree(t testing.TB, img string) map[string]*node {
	t.Helper()
	tree := map[string]*node{}
	dirs := []string{"."}
	for len(dirs) > 0 {
		var cmds []string
		for _, d := range dirs {
			cmds = append(cmds, "ls -p "+quote("/"+d))
		}
		out := debugfs(t, img, cmds...)
		var next []string
		cur := ""
		di := -1
		for _, line := range strings.Split(out, "\n") {
			if strings.HasPrefix(line, "debugfs: ") {
				di++
				cur = dirs[di]
				continue
			}
			m := lsRe.FindStringSubmatch(line)
			if m == nil {
				continue
			}
			name := m[5]
			if name == "." || name == ".." || name == "" {
				continue
			}
			p := name
			if cur != "." {
				p = cur + "/" + name
			}
			mode, _ := strconv.ParseUint(m[2], 8, 32)
			n := &node{mode: uint32(mode)}
			n.ino, _ = strconv.Atoi(m[1])
			tree[p] = n
			if mode&0o170000 == 0o040000 {
				next = append(next, p)
			}
		}
		dirs = next
	}
	tree["."] = &node{mode: 0o040000}
	paths := make([]string, 0, len(tree))
	for p := range tree {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	var cmds []string
	for _, p := range paths {
		cmds = append(cmds, "stat "+quote("/"+p), "ea_list "+quote("/"+p))
	}
	out := debugfs(t, img, cmds...)
	parts := strings.Split(out, "debugfs: ")[1:]
	if len(parts) != 2*len(paths) {
		t.Fatalf("debugfs: %d outputs for %d commands", len(parts), 2*len(paths))
	}
	var eaCmds []string
	var eaKeys [][2]string
	dir := t.TempDir()
	for i, p := range paths {
		n := tree[p]
		st := parts[2*i]
		if m := statInodeRe.FindStringSubmatch(st); m != nil {
			n.ino, _ = strconv.Atoi(m[1])
			mode, _ := strconv.ParseUint(m[2], 8, 32)
			n.mode = n.mode&0o170000 | uint32(mode)
		}
		if m := statUserRe.FindStringSubmatch(st); m != nil {
			u, _ := strconv.ParseUint(m[1], 10, 32)
			g, _ := strconv.ParseUint(m[2], 10, 32)
			n.uid, n.gid = uint32(u), uint32(g)
			n.size, _ = strconv.ParseInt(m[3], 10, 64)
		}
		if m := statLinksRe.FindStringSubmatch(st); m != nil {
			n.links, _ = strconv.Atoi(m[1])
		}
		n.times = map[string][2]int64{}
		for _, m := range statTimeRe.FindAllStringSubmatch(st, -1) {
			a, _ := strconv.ParseUint(m[2], 16, 32)
			b, _ := strconv.ParseUint(m[3], 16, 32)
			sec, ns := decodeTime([2]uint32{uint32(a), uint32(b)})
			n.times[m[1]] = [2]int64{sec, ns}
		}
		if m := statDevRe.FindStringSubmatch(st); m != nil {
			a, _ := strconv.ParseUint(m[1], 10, 32)
			b, _ := strconv.ParseUint(m[2], 10, 32)
			n.dev = [2]uint32{uint32(a), uint32(b)}
		}
		if m := statFastRe.FindStringSubmatch(st); m != nil {
			n.link = m[1]
		}
		for _, m := range eaNameRe.FindAllStringSubmatch(parts[2*i+1], -1) {
			f := filepath.Join(dir, fmt.Sprintf("ea%d", len(eaKeys)))
			eaCmds = append(eaCmds, fmt.Sprintf("ea_get -f %s %s %s", f, quote("/"+p), m[1]))
			eaKeys = append(eaKeys, [2]string{p, m[1]})
		}
	}
	if len(eaCmds) > 0 {
		debugfs(t, img, eaCmds...)
		for i, k := range eaKeys {
			v, err := os.ReadFile(filepath.Join(dir, fmt.Sprintf("ea%d", i)))
			if err != nil {
				t.Fatalf("ea_get %s %s: %v", k[0], k[1], err)
			}
			n := tree[k[0]]
			if n.xattrs == nil {
				n.xattrs = map[string]string{}
			}
			n.xattrs[k[1]] = string(v)
		}
	}
	// contents and slow symlinks via rdump
	out2 := filepath.Join(t.TempDir(), "dump")
	if err := os.Mkdir(out2, 0o755); err != nil {
		t.Fatal(err)
	}
	debugfs(t, img, "rdump / "+out2)
	// rdump restores the modes: let a non-root reader (and the cleanup) into directories
	// and files the image makes unreadable (the modes were read above, with stat).
	filepath.WalkDir(out2, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.Type()&fs.ModeSymlink != 0 {
			return nil
		}
		if info, err := d.Info(); err == nil {
			add := fs.FileMode(0o400)
			if d.IsDir() {
				add = 0o700
			}
			os.Chmod(p, info.Mode().Perm()|add)
		}
		return nil
	})
	root := filepath.Join(out2, "") // rdump of / dumps into out2 directly
	for _, p := range paths {
		n := tree[p]
		fp := filepath.Join(root, p)
		switch n.mode & 0o170000 {
		case 0o100000:
			sum, err := fileSum(fp)
			if err != nil {
				t.Fatalf("read %s: %v", p, err)
			}
			n.sum = sum
		case 0o120000:
			if n.link == "" {
				l, err := os.Readlink(fp)
				if err != nil {
					t.Fatalf("readlink %s: %v", p, err)
				}
				n.link = l
			}
		}
	}
	return tree
}

// quote quotes p for a debugfs command line, where a quote inside quotes is written twice
// (libss; a backslash escapes nothing there).
func quote(p string) string { return `"` + strings.ReplaceAll(p, `"`, `""`) + `"` }

func fileSum(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := bufio.NewReader(f).WriteTo(h); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func sumBytes(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}
