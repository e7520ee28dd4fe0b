package layerapply

import (
	"archive/tar"
	"io/fs"
	"slices"
	"strings"
	"time"
)

// Type is the kind of an [Entry]. Its values are the tar type flags of the same kinds.
type Type byte

// The kinds of entry a [Sink] receives.
const (
	TypeReg     Type = tar.TypeReg     // a regular file
	TypeLink    Type = tar.TypeLink    // another name of an existing regular file (a hard link)
	TypeSymlink Type = tar.TypeSymlink // a symbolic link
	TypeChar    Type = tar.TypeChar    // a character device
	TypeBlock   Type = tar.TypeBlock   // a block device
	TypeDir     Type = tar.TypeDir     // a directory
	TypeFifo    Type = tar.TypeFifo    // a named pipe
)

// String returns the kind in words: "file", "hard link", "symlink", ...
func (t Type) String() string {
	switch t {
	case TypeReg:
		return "file"
	case TypeLink:
		return "hard link"
	case TypeSymlink:
		return "symlink"
	case TypeChar:
		return "char device"
	case TypeBlock:
		return "block device"
	case TypeDir:
		return "directory"
	case TypeFifo:
		return "fifo"
	}
	return "type " + string(rune(t))
}

// Xattr is one extended attribute: its full name ("user.mime_type",
// "security.capability", "system.posix_acl_access") and its value.
type Xattr struct {
	Name  string
	Value []byte
}

// Entry is one resolved item of the merged tree, as every [Sink] receives it. Its fields
// are already checked and normalised: Path is clean, Mode holds only permission bits,
// Xattrs passed the metadata policy and are sorted by name.
type Entry struct {
	// Path is the clean, slash-separated name inside the root ("." for the root), valid
	// under [io/fs.ValidPath], with no symbolic link among its parents.
	Path string
	// Type is the kind of entry.
	Type Type
	// Mode holds the Unix permission bits with setuid (0o4000), setgid (0o2000) and sticky
	// (0o1000).
	Mode uint32
	// UID and GID are the numeric owner.
	UID, GID int
	// ModTime, AccessTime and ChangeTime are the times, with nanoseconds when the layer
	// carried them. AccessTime and ChangeTime are zero when the layer gave none; a sink
	// that must store them uses ModTime instead, so no clock enters the output.
	ModTime, AccessTime, ChangeTime time.Time
	// Size is the length of a regular file's body; 0 for every other type.
	Size int64
	// Sparse, when not nil, lists the data segments of a regular file that a layer stored
	// sparse (GNU and PAX sparse tar entries), sorted, apart, none empty, all within Size;
	// the rest of the file is holes, which read as zeros. Nil for a file stored whole. See
	// [Sink.Entry] for how its body reads.
	Sparse []Segment
	// Linkname is a symbolic link's target exactly as the layer gave it, or for a hard
	// link the clean name of the existing file it is another name of.
	Linkname string
	// Devmajor and Devminor are a device's numbers.
	Devmajor, Devminor uint32
	// Xattrs are the extended attributes, sorted by name, without duplicates. A hard link
	// has none: it shares its target's.
	Xattrs []Xattr
}

// FileMode returns the entry's type and permission bits in Go's form. A hard link reports
// the mode of a regular file.
func (e *Entry) FileMode() fs.FileMode {
	m := fs.FileMode(e.Mode & 0o777)
	if e.Mode&0o4000 != 0 {
		m |= fs.ModeSetuid
	}
	if e.Mode&0o2000 != 0 {
		m |= fs.ModeSetgid
	}
	if e.Mode&0o1000 != 0 {
		m |= fs.ModeSticky
	}
	switch e.Type {
	case TypeDir:
		m |= fs.ModeDir
	case TypeSymlink:
		m |= fs.ModeSymlink
	case TypeChar:
		m |= fs.ModeDevice | fs.ModeCharDevice
	case TypeBlock:
		m |= fs.ModeDevice
	case TypeFifo:
		m |= fs.ModeNamedPipe
	}
	return m
}

// unixMode returns the permission word of m: its permission bits with setuid, setgid and
// sticky.
func unixMode(m fs.FileMode) uint32 {
	p := uint32(m.Perm())
	if m&fs.ModeSetuid != 0 {
		p |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		p |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		p |= 0o1000
	}
	return p
}

// Xattr returns the value of the extended attribute name.
func (e *Entry) Xattr(name string) ([]byte, bool) {
	i, ok := slices.BinarySearchFunc(e.Xattrs, name, func(x Xattr, n string) int { return strings.Compare(x.Name, n) })
	if !ok {
		return nil, false
	}
	return e.Xattrs[i].Value, true
}

// Clone returns a copy of e that shares nothing with it.
func (e *Entry) Clone() *Entry {
	c := *e
	c.Sparse = slices.Clone(e.Sparse)
	if e.Xattrs != nil {
		c.Xattrs = make([]Xattr, len(e.Xattrs))
		for i, x := range e.Xattrs {
			c.Xattrs[i] = Xattr{Name: x.Name, Value: slices.Clone(x.Value)}
		}
	}
	return &c
}

// setXattr sets or replaces the attribute name, keeping the list sorted.
func (e *Entry) setXattr(name string, value []byte) {
	i, ok := slices.BinarySearchFunc(e.Xattrs, name, func(x Xattr, n string) int { return strings.Compare(x.Name, n) })
	if ok {
		e.Xattrs[i].Value = value
		return
	}
	e.Xattrs = slices.Insert(e.Xattrs, i, Xattr{Name: name, Value: value})
}

// removeXattr removes the attribute name, if present.
func (e *Entry) removeXattr(name string) {
	i, ok := slices.BinarySearchFunc(e.Xattrs, name, func(x Xattr, n string) int { return strings.Compare(x.Name, n) })
	if ok {
		e.Xattrs = slices.Delete(e.Xattrs, i, i+1)
	}
}

// sortXattrs sorts xs by name.
func sortXattrs(xs []Xattr) {
	slices.SortFunc(xs, func(a, b Xattr) int { return strings.Compare(a.Name, b.Name) })
}
