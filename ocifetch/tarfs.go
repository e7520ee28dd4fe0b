package ocifetch

import (
	"archive/tar"
	"fmt"
	"io"
	"os"
	"path"
	"strings"
)

// tarFS serves the regular files of an uncompressed tar archive by offset,
// without extracting them: indexTar reads only the headers.
type tarFS struct {
	path  string
	files map[string]tarEntry
}

type tarEntry struct {
	offset, size int64
}

// indexTar reads the headers of the tar at file and records where each
// regular file's body lies.
func indexTar(file string) (*tarFS, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, fmt.Errorf("open archive: %w", err)
	}
	defer f.Close()
	head := make([]byte, 4)
	if _, err := io.ReadFull(f, head); err != nil {
		return nil, fmt.Errorf("read archive %s: %w", file, err)
	}
	if sniffCompression(head) != compressionNone {
		return nil, fmt.Errorf("%w: archive %s is compressed; decompress it first", ErrUnsupportedMediaType, file)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	t := &tarFS{path: file, files: map[string]tarEntry{}}
	tr := tar.NewReader(f)
	for n := 0; ; n++ {
		if n >= maxArchiveFiles {
			return nil, fmt.Errorf("%w: archive %s has more than %d entries", ErrLimit, file, maxArchiveFiles)
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read archive %s: %w", file, err)
		}
		name := cleanTarName(hdr.Name)
		switch hdr.Typeflag {
		case tar.TypeReg:
			// archive/tar reads straight from f without buffering, so the
			// file offset is where this entry's body starts.
			off, err := f.Seek(0, io.SeekCurrent)
			if err != nil {
				return nil, err
			}
			t.files[name] = tarEntry{offset: off, size: hdr.Size}
		case tar.TypeLink:
			if e, ok := t.files[cleanTarName(hdr.Linkname)]; ok {
				t.files[name] = e
			}
		}
	}
	return t, nil
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
