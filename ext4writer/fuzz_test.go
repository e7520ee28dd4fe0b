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
		img := buildImage(t, ents, WithSeed(fmt.Sprint(len(data))))
		fsck(t, img)
		fsckFix(t, img)
		m := model{}
		for _, e := range ents {
			m.apply(e)
		}
		checkModel(t, m, readTree(t, img))
	})
}

// FuzzExt4Ops feeds arbitrary names, modes and sizes to the Writer: it
// must never panic, and whenever Close succeeds the image must pass
// e2fsck.
func FuzzExt4Ops(f *testing.F) {
	needTools(f)
	for _, seed := range []string{
		"",
		"\x00a\x00\x01a/b\x00\x02../x\x00\x03a\x00b\x00\x04/abs\x00\x05a//b\x00",
		"\x00d\x00\x00d/e\x00\x02d/e/f\x00\x03d\x00\x04d/e\x00\x05d/e/f\x00\x01.\x00",
		"\x02lost+found\x00\x00lost+found\x00\x03lost+found\x00\x01lost+found/x\x00",
		"\x01big\x00\xff\xff\xff\x01small\x00\x10\x00\x00\x05small\x00\x04big\x00",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		path := t.TempDir() + "/img"
		out, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		defer out.Close()
		w, err := New(out, WithMaxSize(256<<20))
		if err != nil {
			t.Fatal(err)
		}
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
				_ = w.Create(n, &File{Mode: fs.ModeDir | fs.FileMode(arg)})
			case 1:
				size := int64(arg) * 997
				if w.Create(n, &File{Mode: fs.FileMode(arg), Size: size}) == nil {
					_, _ = w.ReadFrom(io.LimitReader(bytes.NewReader(bytes.Repeat([]byte{arg}, int(size))), size-int64(arg%3)))
				}
			case 2:
				_ = w.Create(n, &File{Mode: fs.ModeSymlink, Linkname: strings.Repeat(string(name), int(arg))})
			case 3:
				_ = w.Remove(n)
			case 4:
				_ = w.Link(n, n+"l")
			case 5:
				_, _ = w.Write(bytes.Repeat([]byte{1}, int(arg)))
			case 6:
				_ = w.Create(n, &File{Mode: fs.ModeDevice | fs.ModeCharDevice, Devmajor: uint32(arg) << 12, Xattrs: map[string][]byte{n: {arg}}})
			case 7:
				_, _ = w.ReadDir(n)
				_, _ = w.MinSize()
			}
		}
		if w.Close() == nil {
			fsck(t, path)
		}
	})
}
