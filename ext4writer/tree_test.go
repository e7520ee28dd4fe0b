package ext4writer

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"io/fs"
	"path"
	"strings"
	"testing"
	"time"
)

// unixMode converts a test fs.FileMode to the Linux st_mode.
func unixMode(m fs.FileMode) uint32 {
	v := uint32(m.Perm())
	if m&fs.ModeSetuid != 0 {
		v |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		v |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		v |= 0o1000
	}
	switch m.Type() {
	case fs.ModeDir:
		v |= 0o040000
	case fs.ModeSymlink:
		v |= 0o120000
	case fs.ModeNamedPipe:
		v |= 0o010000
	case fs.ModeSocket:
		v |= 0o140000
	case fs.ModeDevice:
		v |= 0o060000
	case fs.ModeDevice | fs.ModeCharDevice:
		v |= 0o020000
	default:
		v |= 0o100000
	}
	return v
}

// decodeTime inverts the ext4 time encoding independently of the writer.
func decodeTime(v [2]uint32) (int64, int64) {
	return int64(int32(v[0])) + int64(v[1]&3)<<32, int64(v[1] >> 2)
}

func contentSum(e entry) string {
	h := sha256.New()
	h.Write(e.data)
	if e.size > int64(len(e.data)) {
		zeros := make([]byte, 1<<20)
		rest := e.size - int64(len(e.data)) - int64(len(e.tail))
		for rest > 0 {
			n := min(rest, int64(len(zeros)))
			h.Write(zeros[:n])
			rest -= n
		}
		h.Write(e.tail)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// model is the expected tree: path -> file; hard links share a pointer.
type model map[string]*entry

// apply adds e the way Writer.Create and Writer.Link do.
func (m model) apply(e entry) {
	if e.remove {
		m.remove(e.name)
		return
	}
	if e.hardlink != "" {
		src := m[e.hardlink]
		if old := m[e.name]; old != src {
			m.remove(e.name)
		}
		m[e.name] = src
		return
	}
	if old := m[e.name]; old != nil && old.mode.IsDir() && e.mode.IsDir() {
		*old = e
		return
	}
	m.remove(e.name)
	m[e.name] = &e
}

// remove deletes name and everything below it.
func (m model) remove(name string) {
	old := m[name]
	if old == nil {
		return
	}
	delete(m, name)
	if !old.mode.IsDir() {
		return
	}
	for k := range m {
		if strings.HasPrefix(k, name+"/") {
			delete(m, k)
		}
	}
}

// checkTree compares the image tree read back with the entries (applied
// in order, later entries replacing earlier ones).
func checkTree(t *testing.T, ents []entry, tree map[string]*node) {
	t.Helper()
	m := model{}
	for _, e := range ents {
		m.apply(e)
	}
	checkModel(t, m, tree)
}

func checkModel(t *testing.T, want model, tree map[string]*node) {
	t.Helper()
	links := map[*entry]int{}
	first := map[*entry]string{}
	for n, e := range want {
		links[e]++
		if f, ok := first[e]; !ok || n < f {
			first[e] = n
		}
	}
	subdirs := map[string]int{}
	for n, e := range want {
		if e.mode.IsDir() && n != "." {
			subdirs[path.Dir(n)]++
		}
	}
	subdirs["."]++ // lost+found
	for name, ep := range want {
		e := *ep
		got := tree[name]
		if got == nil {
			t.Errorf("%s: missing from image", name)
			continue
		}
		if got.mode != unixMode(e.mode) {
			t.Errorf("%s: mode %o, want %o", name, got.mode, unixMode(e.mode))
		}
		if got.uid != e.uid || got.gid != e.gid {
			t.Errorf("%s: owner %d:%d, want %d:%d", name, got.uid, got.gid, e.uid, e.gid)
		}
		for k, tm := range map[string]time.Time{"mtime": e.mtime, "atime": e.atime, "ctime": e.ctime, "crtime": e.crtime} {
			var ws, wn int64
			if !tm.IsZero() {
				ws, wn = tm.Unix(), int64(tm.Nanosecond())
			}
			// ext4 holds 1901-12-13 to 2446-05-10; the writer clamps
			if ws < -1<<31 {
				ws, wn = -1<<31, 0
			}
			if maxSec := int64(1<<31 - 1 + 3<<32); ws > maxSec {
				ws, wn = maxSec, 999999999
			}
			gs, gn := got.times[k][0], got.times[k][1]
			if gs != ws || gn != wn {
				t.Errorf("%s: %s %d.%09d, want %d.%09d", name, k, gs, gn, ws, wn)
			}
		}
		if a := first[ep]; a != name && (tree[a] == nil || tree[a].ino != got.ino) {
			t.Errorf("%s: not a hard link of %s", name, a)
		}
		switch {
		case e.mode.IsRegular():
			if got.size != max(e.size, int64(len(e.data))) {
				t.Errorf("%s: size %d, want %d", name, got.size, max(e.size, int64(len(e.data))))
			}
			if s := contentSum(e); got.sum != s {
				t.Errorf("%s: content differs", name)
			}
			if got.links != links[ep] {
				t.Errorf("%s: links %d, want %d", name, got.links, links[ep])
			}
		case e.mode.IsDir():
			wl := 2 + subdirs[name]
			if wl > 65000 {
				wl = 1
			}
			if got.links != wl {
				t.Errorf("%s: links %d, want %d", name, got.links, wl)
			}
		case e.mode&fs.ModeSymlink != 0:
			if got.link != e.link {
				t.Errorf("%s: link %q, want %q", name, got.link, e.link)
			}
		case e.mode&fs.ModeDevice != 0:
			if got.dev != [2]uint32{e.major, e.minor} {
				t.Errorf("%s: device %v, want %d:%d", name, got.dev, e.major, e.minor)
			}
		}
		if len(got.xattrs) != len(e.xattrs) {
			t.Errorf("%s: %d xattrs, want %d", name, len(got.xattrs), len(e.xattrs))
		}
		for k, v := range e.xattrs {
			if k == "system.posix_acl_access" || k == "system.posix_acl_default" {
				v = normACL(v)
			}
			g, ok := got.xattrs[k]
			if k == "system.posix_acl_access" || k == "system.posix_acl_default" {
				g = string(normACL([]byte(g)))
			}
			if !ok || g != string(v) {
				t.Errorf("%s: xattr %s = %q, want %q", name, k, g, v)
			}
		}
	}
	for name := range tree {
		if _, ok := want[name]; !ok && name != "." && name != "lost+found" {
			t.Errorf("%s: unexpected in image", name)
		}
	}
}

// normACL zeroes the ids of ACL entries that carry none; e2fsprogs reads
// them back as 0.
func normACL(v []byte) []byte {
	v = bytes.Clone(v)
	for p := v[4:]; len(p) >= 8; p = p[8:] {
		switch binary.LittleEndian.Uint16(p) {
		case 1, 4, 16, 32:
			clear(p[4:8])
		}
	}
	return v
}

// acl builds a POSIX ACL in the VFS (version 2) format.
func acl(entries ...[3]uint32) []byte {
	b := binary.LittleEndian.AppendUint32(nil, 2)
	for _, e := range entries {
		b = binary.LittleEndian.AppendUint16(b, uint16(e[0]))
		b = binary.LittleEndian.AppendUint16(b, uint16(e[1]))
		b = binary.LittleEndian.AppendUint32(b, e[2])
	}
	return b
}

func manyXattrs(n int) map[string][]byte {
	m := map[string][]byte{}
	for i := range n {
		m["user.attr"+strings.Repeat("x", i%7)+string(rune('a'+i))] = bytes.Repeat([]byte{byte('A' + i%26)}, 1+i*7)
	}
	m["security.selinux"] = []byte("system_u:object_r:bin_t:s0\x00")
	m["trusted.t"] = []byte{}
	return m
}

func allTypes() []entry {
	old := time.Date(1950, 6, 1, 12, 0, 0, 123456789, time.UTC)
	future := time.Date(2100, 1, 2, 3, 4, 5, 999999999, time.UTC)
	mid := time.Unix(1700000000, 42)
	long := strings.Repeat("long/target/", 30)
	return []entry{
		{name: ".", mode: fs.ModeDir | 0o751, uid: 1, gid: 2, mtime: mid, atime: old, ctime: future, xattrs: map[string][]byte{"user.root": []byte("r")}},
		{name: "bin", mode: fs.ModeDir | 0o755, uid: 0, gid: 0, mtime: mid},
		{name: "bin/sh", mode: 0o4755, uid: 70000, gid: 80000, mtime: old, atime: future, ctime: mid, crtime: old, data: []byte("#!/bin/sh\necho hi\n")},
		{name: "bin/empty", mode: 0o644},
		{name: "bin/big", mode: 0o600, data: bytes.Repeat([]byte("0123456789abcdef"), 300000)},
		{name: "bin/sparse", mode: 0o644, data: []byte("head"), size: 10 << 20, tail: []byte("tail")},
		{name: "bin/link", hardlink: "bin/sh"},
		{name: "bin/link2", hardlink: "bin/link"},
		{name: "tmp", mode: fs.ModeDir | fs.ModeSticky | 0o777, mtime: future},
		{name: "tmp/fast", mode: fs.ModeSymlink | 0o777, link: "../bin/sh"},
		{name: "tmp/slow", mode: fs.ModeSymlink | 0o777, link: long},
		{name: "tmp/edge59", mode: fs.ModeSymlink | 0o777, link: strings.Repeat("e", 59)},
		{name: "tmp/edge60", mode: fs.ModeSymlink | 0o777, link: strings.Repeat("f", 60)},
		{name: "dev", mode: fs.ModeDir | fs.ModeSetgid | 0o750, uid: 5, gid: 6},
		{name: "dev/null", mode: fs.ModeDevice | fs.ModeCharDevice | 0o666, major: 1, minor: 3},
		{name: "dev/sda", mode: fs.ModeDevice | 0o660, major: 8, minor: 0},
		{name: "dev/big", mode: fs.ModeDevice | fs.ModeCharDevice | 0o600, major: 300, minor: 70000},
		{name: "dev/fifo", mode: fs.ModeNamedPipe | 0o644},
		{name: "dev/sock", mode: fs.ModeSocket | 0o755},
		{name: "dev/null2", hardlink: "dev/null"},
		{name: "tmp/fast2", hardlink: "tmp/fast"},
		{name: "x", mode: 0o644, data: []byte("xattrs"), xattrs: manyXattrs(17)},
		{name: "acl", mode: fs.ModeDir | 0o770, xattrs: map[string][]byte{
			"system.posix_acl_access":  acl([3]uint32{1, 7, 0xffffffff}, [3]uint32{2, 5, 1000}, [3]uint32{4, 5, 0xffffffff}, [3]uint32{8, 1, 2000}, [3]uint32{16, 7, 0xffffffff}, [3]uint32{32, 0, 0xffffffff}),
			"system.posix_acl_default": acl([3]uint32{1, 7, 0xffffffff}, [3]uint32{4, 5, 0xffffffff}, [3]uint32{32, 4, 0xffffffff}),
			"user.small":               []byte("v"),
		}},
		{name: "bin/sh2", mode: 0o755, data: []byte("replaced later")},
		{name: "bin/sh2", mode: 0o700, data: []byte("replacement")},
	}
}

func TestAllTypes(t *testing.T) {
	needTools(t)
	ents := allTypes()
	for _, tc := range []struct {
		name string
		opts []Option
	}{
		{"default", nil},
		{"legacy", []Option{WithLegacy()}},
		{"nojournal-ro", []Option{WithoutJournal(), WithReadOnly(), WithLabel("rootfs"), WithReservedPercent(0)}},
		{"fixed", []Option{WithSize(64 << 20), WithInodeRatio(4096)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img := buildImage(t, ents, tc.opts...)
			fsck(t, img)
			fsckFix(t, img)
			checkTree(t, ents, readTree(t, img))
		})
	}
}
