package ocifetch

import (
	"archive/tar"
	"fmt"
	"io"
	"os"
	"path"
	"strings"

	"github.com/img2ext4/img2ext4/layerstream"
)

// tarFS serves the regular files of an uncompressed tar archive by offset,
// without extracting them: indexTar reads only the headers.
type tarFS struct {
	path   string
	files  map[string]tarEntry
	shared *os.File // decompressed copy of a compressed archive, or nil
}

type tarEntry struct {
	offset, size int64
}

// indexTar reads the headers of the tar at file and records where each
// regular file's body lies. A gzip- or zstd-compressed archive is first
// decompressed into an unlinked temporary file under tempDir ("" for
// [os.TempDir]), which is kept open for the life of the returned tarFS and
// closed when it is garbage collected.
func indexTar(file, tempDir string) (*tarFS, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, fmt.Errorf("open archive: %w", err)
	}
	defer f.Close()
	head := make([]byte, 4)
	n, err := io.ReadFull(f, head)
	if err != nil && err != io.ErrUnexpectedEOF {
		return nil, fmt.Errorf("read archive %s: %w", file, err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	t := &tarFS{path: file, files: map[string]tarEntry{}}
	r := f
	if layerstream.Sniff(head[:n]) != layerstream.None {
		if t.shared, err = decompressArchive(f, tempDir); err != nil {
			return nil, fmt.Errorf("decompress archive %s: %w", file, err)
		}
		r = t.shared
	}
	if err := t.index(r); err != nil {
		if t.shared != nil {
			t.shared.Close()
		}
		return nil, err
	}
	return t, nil
}

// decompressArchive copies the decompressed stream of f to an unlinked
// temporary file, capped at maxArchiveSize bytes.
func decompressArchive(f *os.File, tempDir string) (*os.File, error) {
	zr, err := layerstream.Decompress(f)
	if err != nil {
		return nil, err
	}
	defer zr.Close()
	tmp, err := os.CreateTemp(tempDir, "ocifetch-archive-")
	if err != nil {
		return nil, err
	}
	// Unlink at once: the open descriptor keeps the data, and nothing is
	// left behind however the process ends.
	os.Remove(tmp.Name())
	n, err := io.Copy(tmp, io.LimitReader(zr, maxArchiveSize+1))
	if err == nil && n > maxArchiveSize {
		err = fmt.Errorf("%w: archive decompresses to more than %d bytes", ErrLimit, maxArchiveSize)
	}
	if err == nil {
		_, err = tmp.Seek(0, io.SeekStart)
	}
	if err != nil {
		tmp.Close()
		return nil, err
	}
	return tmp, nil
}

// index records the regular files of the tar read from f, which must be at
// offset 0.
func (t *tarFS) index(f *os.File) error {
	file := t.path
	symlinks := map[string]string{} // name to cleaned target
	tr := tar.NewReader(f)
	for n := 0; ; n++ {
		if n >= maxArchiveFiles {
			return fmt.Errorf("%w: archive %s has more than %d entries", ErrLimit, file, maxArchiveFiles)
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			t.resolveSymlinks(symlinks)
			return nil
		}
		if err != nil {
			return fmt.Errorf("read archive %s: %w", file, err)
		}
		name := cleanTarName(hdr.Name)
		switch hdr.Typeflag {
		case tar.TypeReg:
			// archive/tar reads straight from f without buffering, so the
			// file offset is where this entry's body starts.
			off, err := f.Seek(0, io.SeekCurrent)
			if err != nil {
				return err
			}
			t.files[name] = tarEntry{offset: off, size: hdr.Size}
		case tar.TypeLink:
			if e, ok := t.files[cleanTarName(hdr.Linkname)]; ok {
				t.files[name] = e
			}
		case tar.TypeSymlink:
			// "docker save" links repeated layers: a/layer.tar -> ../b/layer.tar.
			target := hdr.Linkname
			if !path.IsAbs(target) {
				target = path.Join(path.Dir(name), target)
			}
			symlinks[name] = cleanTarName(target)
		}
	}
}

// resolveSymlinks makes each symbolic link to a regular file (through at
// most a few other links, never leaving the archive) an alias of it.
func (t *tarFS) resolveSymlinks(symlinks map[string]string) {
	for name, target := range symlinks {
		for range 8 {
			if e, ok := t.files[target]; ok {
				t.files[name] = e
				break
			}
			next, ok := symlinks[target]
			if !ok {
				break
			}
			target = next
		}
	}
}

// cleanTarName maps "./a/b", "/a/b" and "a//b" to "a/b".
func cleanTarName(n string) string {
	return strings.TrimPrefix(path.Clean("/"+n), "/")
}

func (t *tarFS) has(name string) bool {
	_, ok := t.files[name]
	return ok
}

func (t *tarFS) size(name string) int64 {
	return t.files[name].size
}

func (t *tarFS) open(name string) (io.ReadCloser, error) {
	e, ok := t.files[name]
	if !ok {
		return nil, fmt.Errorf("%w: %s in archive %s", ErrNotFound, name, t.path)
	}
	if t.shared != nil {
		return io.NopCloser(io.NewSectionReader(t.shared, e.offset, e.size)), nil
	}
	f, err := os.Open(t.path)
	if err != nil {
		return nil, err
	}
	return &sectionFile{SectionReader: io.NewSectionReader(f, e.offset, e.size), f: f}, nil
}

// sectionFile reads one section of a file and closes the file.
type sectionFile struct {
	*io.SectionReader
	f *os.File
}

func (s *sectionFile) Close() error { return s.f.Close() }
