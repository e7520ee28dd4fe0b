// Package treesnap reads a directory tree into a comparable list, for tests that check a
// whole root filesystem against another one (our sinks against each other, and against
// umoci, debugfs or a kernel mount).
package treesnap

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Entry describes one name below the root.
type Entry struct {
	Path    string // slash-separated, relative to the root
	Type    byte   // 'd', 'f', 'l', 'c', 'b', 'p', 's'
	Perm    uint32 // permission bits with setuid, setgid and sticky
	UID     uint32
	GID     uint32
	Size    int64
	Content string // file content (or sha256: for large files), symlink target
	Xattrs  map[string]string
	Major   uint32
	Minor   uint32
	Mtime   time.Time
	Link    string // for a hard-linked non-directory, the smallest name of its group
}

// String renders the entry on one line, every field included.
func (e Entry) String() string {
	var x []string
	for k, v := range e.Xattrs {
		x = append(x, fmt.Sprintf("%s=%q", k, v))
	}
	slices.Sort(x)
	return fmt.Sprintf("%s %c %04o %d:%d size=%d %q dev=%d,%d mtime=%s link=%s xattrs=[%s]",
		e.Path, e.Type, e.Perm, e.UID, e.GID, e.Size, e.Content, e.Major, e.Minor,
		e.Mtime.UTC().Format(time.RFC3339Nano), e.Link, strings.Join(x, " "))
}

// Short renders type, name and content only, for table tests about layer rules.
func (e Entry) Short() string {
	switch e.Type {
	case 'd':
		return e.Path + "/"
	case 'l':
		return e.Path + " -> " + e.Content
	case 'f':
		s := e.Path + " = " + e.Content
		if e.Link != "" {
			s += " (link " + e.Link + ")"
		}
		return s
	}
	return fmt.Sprintf("%s %c %d,%d", e.Path, e.Type, e.Major, e.Minor)
}

// Options selects what Dir reads.
type Options struct {
	// NoXattrs skips extended attributes.
	NoXattrs bool
	// SkipXattr drops attributes whose name has one of these prefixes.
	SkipXattr []string
}

// Dir reads the tree below root, sorted by path, root itself excluded.
func Dir(root string, o Options) ([]Entry, error) {
	var out []Entry
	inodes := map[uint64][]int{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == root {
			return nil
		}
		rel, _ := filepath.Rel(root, p)
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		e := Entry{Path: filepath.ToSlash(rel), Perm: st.Mode & 0o7777, UID: st.Uid, GID: st.Gid,
			Mtime: time.Unix(st.Mtim.Sec, st.Mtim.Nsec)}
		switch st.Mode & syscall.S_IFMT {
		case unix.S_IFDIR:
			e.Type = 'd'
		case unix.S_IFREG:
			e.Type, e.Size = 'f', st.Size
			c, err := content(p, st.Size)
			if err != nil {
				return err
			}
			e.Content = c
		case unix.S_IFLNK:
			e.Type = 'l'
			t, err := os.Readlink(p)
			if err != nil {
				return err
			}
			e.Content = t
		case unix.S_IFCHR, unix.S_IFBLK:
			e.Type = 'c'
			if st.Mode&syscall.S_IFMT == unix.S_IFBLK {
				e.Type = 'b'
			}
			e.Major, e.Minor = unix.Major(st.Rdev), unix.Minor(st.Rdev)
		case unix.S_IFIFO:
			e.Type = 'p'
		case unix.S_IFSOCK:
			e.Type = 's'
		}
		if !o.NoXattrs {
			x, err := xattrs(p, o.SkipXattr)
			if err != nil {
				return err
			}
			e.Xattrs = x
		}
		if e.Type != 'd' && st.Nlink > 1 {
			inodes[st.Ino] = append(inodes[st.Ino], len(out))
		}
		out = append(out, e)
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, idx := range inodes {
		if len(idx) < 2 {
			continue
		}
		first := out[idx[0]].Path
		for _, i := range idx {
			first = min(first, out[i].Path)
		}
		for _, i := range idx {
			out[i].Link = first
		}
	}
	slices.SortFunc(out, func(a, b Entry) int { return strings.Compare(a.Path, b.Path) })
	return out, nil
}

func content(p string, size int64) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	if size <= 256 {
		b, err := io.ReadAll(f)
		return string(b), err
	}
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), nil
}

func xattrs(p string, skip []string) (map[string]string, error) {
	buf := make([]byte, 64<<10)
	n, err := unix.Llistxattr(p, buf)
	if err != nil {
		if err == unix.ENOTSUP {
			return nil, nil
		}
		return nil, fmt.Errorf("listxattr %s: %w", p, err)
	}
	var out map[string]string
	for _, name := range strings.Split(string(buf[:n]), "\x00") {
		if name == "" || hasPrefix(name, skip) {
			continue
		}
		v := make([]byte, 64<<10)
		m, err := unix.Lgetxattr(p, name, v)
		if err != nil {
			return nil, fmt.Errorf("getxattr %s %s: %w", p, name, err)
		}
		if out == nil {
			out = map[string]string{}
		}
		out[name] = string(v[:m])
	}
	return out, nil
}

func hasPrefix(s string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

// Lines renders entries with String, one per element.
func Lines(es []Entry) []string {
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = e.String()
	}
	return out
}

// ShortLines renders entries with Short, one per element.
func ShortLines(es []Entry) []string {
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = e.Short()
	}
	return out
}

// Diff returns a readable line diff of two listings, or "" when they are equal.
func Diff(want, got []string) string {
	var b strings.Builder
	i, j := 0, 0
	for i < len(want) || j < len(got) {
		switch {
		case j >= len(got) || (i < len(want) && want[i] < got[j]):
			fmt.Fprintf(&b, "- %s\n", want[i])
			i++
		case i >= len(want) || (j < len(got) && got[j] < want[i]):
			fmt.Fprintf(&b, "+ %s\n", got[j])
			j++
		default:
			if want[i] != got[j] {
				fmt.Fprintf(&b, "- %s\n+ %s\n", want[i], got[j])
			}
			i++
			j++
		}
	}
	return b.String()
}
