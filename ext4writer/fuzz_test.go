package ext4writer

import (
	"bytes"
	"fmt"
	"io/fs"
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
