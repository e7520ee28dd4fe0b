package img2ext4

import (
	"archive/tar"
	"fmt"
	"io"
	"io/fs"
	"path"

	"github.com/img2ext4/img2ext4/ext4writer"
	"github.com/img2ext4/img2ext4/layerapply"
)

// ext4Sink applies the merged layers straight into an ext4 image: the writer holds the
// merged tree's metadata, and each body streams once into the blocks it will occupy. Blocks
// of entries that a later layer removes are reused by the writer.
type ext4Sink struct {
	w *ext4writer.Writer
}

var _ layerapply.Sink = (*ext4Sink)(nil)

// fileOf turns a sink header into the writer's description of an entry.
func fileOf(hdr *tar.Header) (*ext4writer.File, error) {
	perm := fs.FileMode(hdr.Mode & 0o777)
	if hdr.Mode&0o4000 != 0 {
		perm |= fs.ModeSetuid
	}
	if hdr.Mode&0o2000 != 0 {
		perm |= fs.ModeSetgid
	}
	if hdr.Mode&0o1000 != 0 {
		perm |= fs.ModeSticky
	}
	f := &ext4writer.File{UID: uint32(hdr.Uid), GID: uint32(hdr.Gid), Mtime: hdr.ModTime, Atime: hdr.AccessTime, Ctime: hdr.ChangeTime}
	// Tar rarely carries atime and ctime; the modification time stands in, so that no
	// clock enters the image.
	if f.Atime.IsZero() {
		f.Atime = f.Mtime
	}
	if f.Ctime.IsZero() {
		f.Ctime = f.Mtime
	}
	f.Crtime = f.Mtime
	switch hdr.Typeflag {
	case tar.TypeReg:
		f.Size = hdr.Size
	case tar.TypeDir:
		perm |= fs.ModeDir
	case tar.TypeSymlink:
		perm |= fs.ModeSymlink
		f.Linkname = hdr.Linkname
	case tar.TypeChar:
		perm |= fs.ModeDevice | fs.ModeCharDevice
	case tar.TypeBlock:
		perm |= fs.ModeDevice
	case tar.TypeFifo:
		perm |= fs.ModeNamedPipe
	default:
		return nil, fmt.Errorf("%w: type %q", layerapply.ErrInvalidEntry, hdr.Typeflag)
	}
	f.Mode = perm
	f.Devmajor, f.Devminor = uint32(hdr.Devmajor), uint32(hdr.Devminor)
	if len(hdr.PAXRecords) > 0 {
		err := layerapply.Xattrs(hdr, func(k, v string) error {
			if f.Xattrs == nil {
				f.Xattrs = make(map[string][]byte)
			}
			f.Xattrs[k] = []byte(v)
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return f, nil
}

// Entry implements layerapply.Sink.
func (s *ext4Sink) Entry(hdr *tar.Header, body io.Reader) error {
	if hdr.Typeflag == tar.TypeLink {
		return s.w.Link(hdr.Linkname, hdr.Name)
	}
	f, err := fileOf(hdr)
	if err != nil {
		return fmt.Errorf("ext4 %s: %w", hdr.Name, err)
	}
	if err := s.w.Create(hdr.Name, f); err != nil {
		return err
	}
	if hdr.Typeflag == tar.TypeReg && hdr.Size > 0 {
		n, err := s.w.ReadFrom(body)
		if err != nil {
			return err
		}
		if n != hdr.Size {
			return fmt.Errorf("ext4 %s: body is %d bytes, header says %d: %w", hdr.Name, n, hdr.Size, io.ErrUnexpectedEOF)
		}
	}
	return nil
}

// Whiteout implements layerapply.Sink.
func (s *ext4Sink) Whiteout(name string) error { return s.w.Remove(name) }

// Opaque implements layerapply.Sink.
func (s *ext4Sink) Opaque(dir string) error {
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
