package layerapply

import (
	"fmt"
	"io"
	"io/fs"
	"path"

	"github.com/img2ext4/img2ext4/ext4writer"
)

// Ext4 is a [Sink] that applies the merged layers straight into an ext4 image: the
// [ext4writer.Writer] holds the merged tree's metadata, and each body streams once into the
// blocks it will occupy. Blocks of entries that a later layer removes or replaces are
// reused by the writer, so the image holds no dead data. The writer's tree is the only
// copy of the merged tree's leaves: the merge keeps nodes only for directories and
// symbolic links and asks the writer about regular files, devices and FIFOs. Ext4 is a
// [Tree] when the writer's destination can be read back (an *os.File can).
type Ext4 struct {
	w *ext4writer.Writer
	f ext4writer.File // reused for every entry
}

var _ Tree = (*Ext4)(nil)

// NewExt4 returns a sink writing into w. The caller creates w with the image's options and
// closes it after Apply.
func NewExt4(w *ext4writer.Writer) *Ext4 { return &Ext4{w: w} }

// file fills the reused writer description of e.
func (s *Ext4) file(e *Entry) *ext4writer.File {
	s.f = ext4writer.File{
		Mode: e.FileMode(), UID: uint32(e.UID), GID: uint32(e.GID),
		Mtime: e.ModTime, Atime: e.AccessTime, Ctime: e.ChangeTime, Crtime: e.ModTime,
		Size: e.Size, Linkname: e.Linkname, Devmajor: e.Devmajor, Devminor: e.Devminor,
	}
	// Tar rarely carries atime and ctime; the modification time stands in, so that no
	// clock enters the image.
	if s.f.Atime.IsZero() {
		s.f.Atime = s.f.Mtime
	}
	if s.f.Ctime.IsZero() {
		s.f.Ctime = s.f.Mtime
	}
	if e.Type != TypeSymlink {
		s.f.Linkname = ""
	}
	if len(e.Xattrs) > 0 {
		s.f.Xattrs = make(map[string][]byte, len(e.Xattrs))
		for _, x := range e.Xattrs {
			s.f.Xattrs[x.Name] = x.Value
		}
	}
	return &s.f
}

// Entry implements [Sink].
func (s *Ext4) Entry(e *Entry, body io.Reader) error {
	switch e.Type {
	case TypeLink:
		return s.w.Link(e.Linkname, e.Path)
	case TypeReg, TypeDir, TypeSymlink, TypeChar, TypeBlock, TypeFifo:
	default:
		return fmt.Errorf("ext4 %s: %w: type %q", e.Path, ErrInvalidEntry, byte(e.Type))
	}
	if err := s.w.Create(e.Path, s.file(e)); err != nil {
		return err
	}
	if e.Type != TypeReg || e.Size == 0 {
		return nil
	}
	// Holes of a sparse file are skipped: they get no blocks.
	var pos int64
	err := eachSegment(e, body, func(off int64, r io.Reader, n int64) error {
		if err := s.w.Skip(off - pos); err != nil {
			return err
		}
		got, err := s.w.ReadFrom(r)
		if err != nil {
			return err
		}
		if got != n {
			return fmt.Errorf("ext4 %s: body is %d bytes, the entry says %d: %w", e.Path, off+got, e.Size, io.ErrUnexpectedEOF)
		}
		pos = off + n
		return nil
	})
	if err != nil {
		return err
	}
	return s.w.Skip(e.Size - pos)
}

// Whiteout implements [Sink].
func (s *Ext4) Whiteout(name string) error { return s.w.Remove(name) }

// Opaque implements [Sink].
func (s *Ext4) Opaque(dir string) error {
	names, err := s.w.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, n := range names {
		if err := s.w.Remove(path.Join(dir, n)); err != nil {
			return err
		}
	}
	return nil
}

// Lstat implements [Tree].
func (s *Ext4) Lstat(name string) (*Entry, error) {
	f, err := s.w.Stat(name)
	if err != nil {
		return nil, err
	}
	e := &Entry{
		Path: name, Mode: unixMode(f.Mode), UID: int(f.UID), GID: int(f.GID),
		ModTime: f.Mtime, AccessTime: f.Atime, ChangeTime: f.Ctime,
		Size: f.Size, Linkname: f.Linkname, Devmajor: f.Devmajor, Devminor: f.Devminor,
	}
	switch t := f.Mode.Type(); {
	case t == 0:
		e.Type = TypeReg
	case t == fs.ModeDir:
		e.Type = TypeDir
	case t == fs.ModeSymlink:
		e.Type = TypeSymlink
	case t == fs.ModeNamedPipe:
		e.Type = TypeFifo
	case t == fs.ModeDevice|fs.ModeCharDevice:
		e.Type = TypeChar
	case t == fs.ModeDevice:
		e.Type = TypeBlock
	default:
		return nil, fmt.Errorf("ext4 %s: %w: mode %v", name, ErrInvalidEntry, f.Mode)
	}
	for k, v := range f.Xattrs {
		e.Xattrs = append(e.Xattrs, Xattr{Name: k, Value: v})
	}
	sortXattrs(e.Xattrs)
	return e, nil
}

// Open implements [Tree].
func (s *Ext4) Open(name string) (io.ReadCloser, error) {
	r, err := s.w.Open(name)
	if err != nil {
		return nil, err
	}
	return io.NopCloser(r), nil
}

// SetMeta implements [Tree].
func (s *Ext4) SetMeta(e *Entry) error { return s.w.SetMetadata(e.Path, s.file(e)) }
