package ext4writer

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"slices"
	"time"

	"github.com/img2ext4/img2ext4/ext4writer/internal/disk"
)

// ErrNotReadable reports a body read back from a Writer whose destination is not an
// [io.ReaderAt].
var ErrNotReadable = errors.New("ext4writer: destination cannot be read back")

// Stat returns the description of name as the image holds it now: the File that would
// create it again, with Xattrs in the form Create takes. Symbolic links are not followed.
// Together with [Writer.ReadDir] and [Writer.Open] it lets a caller treat the Writer as its
// merged tree.
func (w *Writer) Stat(name string) (*File, error) {
	if err := w.check("stat", name); err != nil {
		return nil, err
	}
	in, _, _, err := w.lookup(name)
	if err != nil {
		return nil, opErr("stat", name, err)
	}
	f := &File{
		Mode: decodeMode(in.mode),
		UID:  in.uid, GID: in.gid,
		Atime: decTime(in.atime), Mtime: decTime(in.mtime), Ctime: decTime(in.ctime), Crtime: decTime(in.crtime),
		Devmajor: in.major, Devminor: in.minor,
		Linkname: in.link,
	}
	if in.mode&disk.SIFMT == disk.SIFREG {
		f.Size = in.size
	}
	if len(in.xattrs) > 0 {
		f.Xattrs = make(map[string][]byte, len(in.xattrs))
		for _, x := range in.xattrs {
			v := slices.Clone(x.value)
			if x.index == 2 || x.index == 3 {
				v = aclFromDisk(x.value)
			}
			f.Xattrs[xattrPrefix(x.index)+x.name] = v
		}
	}
	return f, nil
}

// Links returns the number of names of name.
func (w *Writer) Links(name string) (int, error) {
	in, _, _, err := w.lookup(name)
	if err != nil {
		return 0, opErr("stat", name, err)
	}
	return int(in.nlink), nil
}

// SetMetadata gives the existing name the permission bits (with setuid, setgid, sticky),
// owner, times and extended attributes of f. Its type, body, link target and device
// numbers stay; the type bits of f.Mode are ignored.
func (w *Writer) SetMetadata(name string, f *File) error {
	if err := w.check("chmeta", name); err != nil {
		return err
	}
	if f == nil {
		return opErr("chmeta", name, fmt.Errorf("%w: nil File", ErrInvalidFile))
	}
	in, _, _, err := w.lookup(name)
	if err != nil {
		return opErr("chmeta", name, err)
	}
	perm, err := encodeMode(f.Mode &^ fs.ModeType)
	if err != nil {
		return opErr("chmeta", name, err)
	}
	if err := in.setMeta(f, in.mode&disk.SIFMT|perm&^disk.SIFMT); err != nil {
		return opErr("chmeta", name, err)
	}
	return nil
}

// Open returns the body of the regular file name as the image holds it. The destination
// must be an [io.ReaderAt] (an *os.File is). The reader is valid until the next call that
// changes the Writer.
func (w *Writer) Open(name string) (io.Reader, error) {
	if err := w.check("open", name); err != nil {
		return nil, err
	}
	in, _, _, err := w.lookup(name)
	if err != nil {
		return nil, opErr("open", name, err)
	}
	if in.mode&disk.SIFMT != disk.SIFREG {
		return nil, opErr("open", name, fmt.Errorf("%w: not a regular file", ErrInvalidFile))
	}
	ra, ok := w.f.(io.ReaderAt)
	if !ok {
		return nil, opErr("open", name, ErrNotReadable)
	}
	if err := w.flush(); err != nil {
		w.err = opErr("write", w.curName, err)
		return nil, w.err
	}
	return &bodyReader{ra: ra, ext: in.ext, size: in.size}, nil
}

// bodyReader reads a file's body through its extents; blocks no extent maps are holes.
type bodyReader struct {
	ra   io.ReaderAt
	ext  []disk.Extent
	size int64
	off  int64
}

func (r *bodyReader) Read(p []byte) (int, error) {
	if r.off >= r.size {
		return 0, io.EOF
	}
	p = p[:min(int64(len(p)), r.size-r.off)]
	lblk := uint64(r.off / blockSize)
	in := r.off % blockSize
	// Find the extent holding lblk, or the next one.
	for _, e := range r.ext {
		start, end := uint64(e.Logical), uint64(e.Logical)+uint64(e.Len)
		if lblk >= end {
			continue
		}
		if lblk < start {
			// a hole up to the extent
			n := min(int64(len(p)), int64(start-lblk)*blockSize-in)
			clear(p[:n])
			r.off += n
			return int(n), nil
		}
		n := min(int64(len(p)), int64(end-lblk)*blockSize-in)
		m, err := r.ra.ReadAt(p[:n], int64(e.Start+lblk-start)*blockSize+in)
		r.off += int64(m)
		if err == io.EOF && int64(m) == n {
			err = nil
		}
		return m, err
	}
	// a hole to the end
	n := len(p)
	clear(p)
	r.off += int64(n)
	return n, nil
}

func decodeMode(mode uint16) fs.FileMode {
	m := fs.FileMode(mode & 0o777)
	if mode&0o4000 != 0 {
		m |= fs.ModeSetuid
	}
	if mode&0o2000 != 0 {
		m |= fs.ModeSetgid
	}
	if mode&0o1000 != 0 {
		m |= fs.ModeSticky
	}
	switch mode & disk.SIFMT {
	case disk.SIFDIR:
		m |= fs.ModeDir
	case disk.SIFLNK:
		m |= fs.ModeSymlink
	case disk.SIFIFO:
		m |= fs.ModeNamedPipe
	case disk.SIFSOCK:
		m |= fs.ModeSocket
	case disk.SIFBLK:
		m |= fs.ModeDevice
	case disk.SIFCHR:
		m |= fs.ModeDevice | fs.ModeCharDevice
	}
	return m
}

// decTime is the inverse of encTime for the times it stores.
func decTime(t [2]uint32) time.Time {
	if t == [2]uint32{} {
		return time.Time{}
	}
	sec := int64(int32(t[0])) + int64(t[1]&3)<<32
	return time.Unix(sec, int64(t[1]>>2))
}

func xattrPrefix(index uint8) string {
	switch index {
	case 1:
		return "user."
	case 2:
		return aclAccess
	case 3:
		return aclDefault
	case 4:
		return "trusted."
	case 6:
		return "security."
	}
	return ""
}

// aclFromDisk converts a POSIX ACL from ext4's format back to the VFS format.
func aclFromDisk(v []byte) []byte {
	le := binary.LittleEndian
	out := make([]byte, 4, 4+2*len(v))
	le.PutUint32(out, 2)
	for p := v[4:]; len(p) >= 4; {
		tag := le.Uint16(p)
		var e [8]byte
		copy(e[:4], p[:4])
		if (tag == 0x02 || tag == 0x08) && len(p) >= 8 {
			copy(e[4:], p[4:8])
			p = p[8:]
		} else {
			le.PutUint32(e[4:], 0xffffffff) // ACL_UNDEFINED_ID
			p = p[4:]
		}
		out = append(out, e[:]...)
	}
	return out
}

// Kind returns the type bits of name's mode (0 for a regular file, fs.ModeDir, ...) and
// whether name exists, without following symbolic links and without allocating.
func (w *Writer) Kind(name string) (fs.FileMode, bool) {
	in, _, _, err := w.lookup(name)
	if err != nil {
		return 0, false
	}
	return decodeMode(in.mode).Type(), true
}
