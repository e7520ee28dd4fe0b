package ext4writer

import (
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"sort"
	"strings"
	"testing"
	"time"
)

var fuzzNames = []string{"a", "b", "c", "dir", "é", "\xff", strings.Repeat("n", 255), "x.txt"}

// fuzzOps decodes data into a sequence of valid operations.
func fuzzOps(data []byte) []entry {
	m := model{}
	var ents []entry
	next := func() byte {
		if len(data) == 0 {
			return 0
		}
		b := data[0]
		data = data[1:]
		return b
	}
	pick := func(dirs bool) string {
		var names []string
		for n, e := range m {
			if e.mode.IsDir() == dirs {
				names = append(names, n)
			}
		}
		sort.Strings(names)
		if dirs {
			names = append([]string{""}, names...)
		}
		if len(names) == 0 {
			return ""
		}
		return names[int(next())%len(names)]
	}
	for len(data) > 0 && len(ents) < 64 {
		op := next() % 8
		parent := pick(true)
		name := path.Join(parent, fuzzNames[int(next())%len(fuzzNames)])
		sec := int64(int32(uint32(next())<<24|uint32(next())<<8)) * 3
		e := entry{name: name, uid: uint32(next()) << 12, gid: uint32(next()), mtime: time.Unix(sec, int64(next())*1000), mode: fs.FileMode(next()) & 0o7777 &^ 0o7000}
		if next()%4 == 0 {
			e.xattrs = map[string][]byte{"user." + fuzzNames[int(next())%4]: bytes.Repeat([]byte{next()}, int(next()))}
			if next()%2 == 0 {
				e.xattrs["trusted.big"] = bytes.Repeat([]byte{7}, int(next())*8)
			}
		}
		switch op {
		case 0, 1:
			e.mode |= fs.ModeDir
		case 2, 3:
			n := int(next()) * int(next()) * 3
			e.data = bytes.Repeat([]byte{next() | 1, next()}, n/2)
			if next()%3 == 0 {
				e.size = int64(len(e.data)) + int64(next())*5000
				e.tail = []byte("end")
			}
		case 4:
			e.mode |= fs.ModeSymlink
			e.link = strings.Repeat("t", 1+int(next())*4)
		case 5:
			old := pick(false)
			if old == "" || strings.HasPrefix(old, name+"/") || (m[name] != nil && m[name].mode.IsDir()) {
				continue
			}
			e = entry{name: name, hardlink: old}
		case 6:
			victim := pick(next()%2 == 0)
			if victim == "" || victim == "lost+found" {
				continue
			}
			e = entry{name: victim, remove: true}
		case 7:
			switch next() % 3 {
			case 0:
				e.mode |= fs.ModeDevice | fs.ModeCharDevice
			case 1:
				e.mode |= fs.ModeDevice
			default:
				e.mode |= fs.ModeNamedPipe
			}
			e.major, e.minor = uint32(next())*5, uint32(next())*1000
		}
		if name == "lost+found" && !e.remove {
			continue
		}
		e.probe = len(ents)%5 == 4
		m.apply(e)
		ents = append(ents, e)
	}
	return ents
}

func FuzzExt4Write(f *testing.F) {
	needTools(f)
	for _, seed := range []string{
		"",
		"\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f",
		"\x02\x00\x03abcdefghijklmnopqrstuvwxyz\x04\x00\x01\x05\x05\x05",
		"\x00\x00\x02\x10\x20\x30\x00\x01\x02\x03\x04\x05\x02\x01\x05\x06\x07\x08\x09\x0a\x0b\x0c\x05\x00\x03\x00",
		"\x01\x03\x00\x00\x00\x00\x00\x00\x00\x00\x03\x01\x04\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x06\x00\x00",
		string(bytes.Repeat([]byte{3, 1, 7, 9, 200, 4, 2, 0, 99, 5, 2, 1, 3, 9, 11, 4}, 12)),
		string(bytes.Repeat([]byte{0, 2, 7, 5, 1, 6, 6, 0, 255, 4, 3, 2, 1}, 9)),
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		ents := fuzzOps(data)
		// A small free-space budget keeps each image a few MiB instead of the default
		// 64 MiB of room: Go's fuzz worker gives one input 10 s of wall time, and reading,
		// copying and checking 74 MB images twice per input ran past it on a loaded machine.
		free := []int64{0, 256 << 10, 4 << 20}[len(data)%3]
		img := buildImage(t, ents, WithSeed(fmt.Sprint(len(data))), WithFreeSpace(free))
		fsck(t, img)
		fsckFix(t, img)
		m := model{}
		for _, e := range ents {
			m.apply(e)
		}
		checkModel(t, m, readTree(t, img))
	})
}

// opsNode is what the ops model expects at a name; hard links share one.
type opsNode struct {
	kind byte // 'd', 'f', 'l', 'c'
	data []byte
	link string
}

// opsModel is a plain model of the operations that succeeded, with the semantics the
// Writer documents: Create replaces an existing entry (a directory given again as a
// directory keeps its children), Remove removes a whole subtree, Link shares the node.
type opsModel map[string]*opsNode

func (m opsModel) removeTree(name string) {
	for n := range m {
		if n == name || strings.HasPrefix(n, name+"/") {
			delete(m, n)
		}
	}
}

func (m opsModel) put(name string, n *opsNode) {
	if old := m[name]; old != nil && old.kind == 'd' && n.kind == 'd' {
		return
	}
	m.removeTree(name)
	m[name] = n
}

func (m opsModel) children(dir string) []string {
	var out []string
	for n := range m {
		if path.Dir(n) == dir {
			out = append(out, path.Base(n))
		}
	}
	sort.Strings(out)
	return out
}

// FuzzExt4Ops feeds arbitrary names, modes and sizes to the Writer: it must never panic;
// whenever Close succeeds the image must pass e2fsck -fn; and, unless a body was left
// short or a stray Write landed (the Writer then reports an error whose after-effects the
// model does not predict), the image read back holds exactly what the successful
// operations made: names, types, sizes, contents, symbolic link targets and hard links,
// lost+found included (go-diskfs's reader, or debugfs for names that are no
// valid UTF-8). ReadDir of a directory the model knows lists its
// children.
func FuzzExt4Ops(f *testing.F) {
	needTools(f)
	for _, seed := range []string{
		"",
		"\x00a\x00\x01a/b\x00\x02../x\x00\x03a\x00b\x00\x04/abs\x00\x05a//b\x00",
		"\x00d\x00\x00d/e\x00\x02d/e/f\x00\x03d\x00\x04d/e\x00\x05d/e/f\x00\x01.\x00",
		"\x02lost+found\x00\x00lost+found\x00\x03lost+found\x00\x01lost+found/x\x00",
		"\x01big\x00\xff\xff\xff\x01small\x00\x10\x00\x00\x05small\x00\x04big\x00",
		"\x00d\x00\x07\x01d/f\x00\x03\x04d/f\x00\x00\x07d\x00\x00\x00d\x00\x01\x07d\x00\x00",
		"\x01f\x00\x06\x00f\x00\x07\x02f\x00\x02\x07.\x00\x00\x03lost+found\x00\x00\x07.\x00\x00",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		img := t.TempDir() + "/img"
		out, err := os.Create(img)
		if err != nil {
			t.Fatal(err)
		}
		defer out.Close()
		w, err := New(out, WithMaxSize(256<<20))
		if err != nil {
			t.Fatal(err)
		}
		m := opsModel{"lost+found": {kind: 'd'}}
		exact := true // the model predicts the image
		for len(data) > 0 {
			op := data[0] % 8
			data = data[1:]
			name, rest, _ := bytes.Cut(data, []byte{0})
			data = rest
			var arg byte
			if len(data) > 0 {
				arg, data = data[0], data[1:]
			}
			n := string(name)
			switch op {
			case 0:
				if w.Create(n, &File{Mode: fs.ModeDir | fs.FileMode(arg)}) == nil && n != "." {
					m.put(n, &opsNode{kind: 'd'})
				}
			case 1:
				size := int64(arg) * 997
				if w.Create(n, &File{Mode: fs.FileMode(arg), Size: size}) == nil {
					body := size
					if arg%5 == 4 {
						body-- // a body left short, now and then
					}
					got, _ := w.ReadFrom(io.LimitReader(bytes.NewReader(bytes.Repeat([]byte{arg}, int(size))), body))
					if got != size {
						exact = false
					}
					m.put(n, &opsNode{kind: 'f', data: bytes.Repeat([]byte{arg}, int(got))})
				}
			case 2:
				target := strings.Repeat(string(name), int(arg))
				if w.Create(n, &File{Mode: fs.ModeSymlink, Linkname: target}) == nil {
					m.put(n, &opsNode{kind: 'l', link: target})
				}
			case 3:
				if w.Remove(n) == nil {
					lf := n == "lost+found" && m[n] != nil && m[n].kind == 'd'
					m.removeTree(n)
					if lf {
						m[n] = &opsNode{kind: 'd'} // kept for e2fsck, emptied
					}
				}
			case 4:
				if w.Link(n, n+"l") == nil {
					m.removeTree(n + "l")
					m[n+"l"] = m[n]
				}
			case 5:
				if k, _ := w.Write(bytes.Repeat([]byte{1}, int(arg))); k > 0 {
					exact = false
				}
			case 6:
				if w.Create(n, &File{Mode: fs.ModeDevice | fs.ModeCharDevice, Devmajor: uint32(arg) << 12, Xattrs: map[string][]byte{n: {arg}}}) == nil {
					m.put(n, &opsNode{kind: 'c'})
				}
			case 7:
				ents, err := w.ReadDir(n)
				_, _ = w.MinSize()
				dir := n
				if exact && (n == "." || m[n] != nil && m[n].kind == 'd') {
					if err != nil {
						t.Fatalf("ReadDir(%q) of a directory: %v", n, err)
					}
					got := append([]string(nil), ents...)
					sort.Strings(got)
					if want := m.children(dir); strings.Join(got, "/") != strings.Join(want, "/") {
						t.Fatalf("ReadDir(%q) = %q, the operations made %q", n, got, want)
					}
				}
			}
		}
		if w.Close() != nil {
			return
		}
		fsck(t, img)
		if m["lost+found"] == nil {
			m["lost+found"] = &opsNode{kind: 'd'} // Close makes it again
		}
		if exact {
			checkOps(t, img, m)
		}
	})
}

// checkOps compares the image with the ops model, read with go-diskfs, or with debugfs
// when a name is no valid UTF-8 (go-diskfs refuses names that are not fs.ValidPath; the
// Writer, like Linux, takes any bytes but "/" and NUL). When names are both invalid UTF-8
// and hold a newline, which debugfs's line-based listing cannot carry, nothing is
// compared (e2fsck has still checked the image).
func checkOps(t *testing.T, img string, m opsModel) {
	t.Helper()
	valid, newline := true, false
	for name := range m {
		valid = valid && fs.ValidPath(name)
		newline = newline || strings.Contains(name, "\n")
	}
	var got map[string]*node
	switch {
	case valid:
		got = diskfsTree(t, img)
	case !newline:
		got = readTree(t, img)
	default:
		t.Log("no reader for these names: go-diskfs refuses invalid UTF-8, debugfs's listing splits names at newlines")
		return
	}
	ino := map[*opsNode]int{}
	for name, want := range m {
		g := got[name]
		if g == nil {
			t.Errorf("%q: missing", name)
			continue
		}
		var kind byte
		switch g.mode & 0o170000 {
		case 0o040000:
			kind = 'd'
		case 0o100000:
			kind = 'f'
		case 0o120000:
			kind = 'l'
		case 0o020000:
			kind = 'c'
		}
		if kind != want.kind {
			t.Errorf("%q: type %c, want %c", name, kind, want.kind)
			continue
		}
		switch kind {
		case 'f':
			if g.size != int64(len(want.data)) || g.sum != sumBytes(want.data) {
				t.Errorf("%q: %d bytes, want %d (or content differs)", name, g.size, len(want.data))
			}
		case 'l':
			if g.link != want.link {
				t.Errorf("%q: link %q, want %q", name, g.link, want.link)
			}
		}
		if kind != 'd' {
			if i, ok := ino[want]; ok && i != g.ino {
				t.Errorf("%q: not a hard link of the names sharing its node", name)
			}
			ino[want] = g.ino
		}
	}
	for name := range got {
		if m[name] == nil && name != "." { // debugfs lists the root
			t.Errorf("%q: in the image, not made by any operation", name)
		}
	}
	seen := map[int]*opsNode{}
	for name, want := range m {
		if want.kind == 'd' || got[name] == nil {
			continue
		}
		if o, ok := seen[got[name].ino]; ok && o != want {
			t.Errorf("%q: shares an inode with a name it is no link of", name)
		}
		seen[got[name].ino] = want
	}
}
