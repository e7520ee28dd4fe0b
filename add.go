package img2ext4

import (
	"archive/tar"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/img2ext4/img2ext4/layerapply"
)

// Add names a host file or directory to put into the image.
type Add struct {
	// Src is the host path. A directory is copied with everything below it; symbolic links
	// are copied as links, never followed.
	Src string
	// Dst is the path inside the image. It resolves inside the image root: symlinked
	// parents are followed there, missing parents are created (0755, root-owned).
	Dst string
	// Mode, when not zero, replaces the permission bits of Src itself (not of what a
	// directory holds). The default keeps the host file's bits.
	Mode fs.FileMode
}

// ParseAdd parses the command-line form SRC:DST[:MODE], MODE in octal.
func ParseAdd(s string) (Add, error) {
	parts := strings.Split(s, ":")
	if len(parts) < 2 || len(parts) > 3 || parts[0] == "" || parts[1] == "" {
		return Add{}, fmt.Errorf("add %q: want SRC:DST[:MODE]", s)
	}
	a := Add{Src: parts[0], Dst: parts[1]}
	if len(parts) == 3 {
		m, err := strconv.ParseUint(parts[2], 8, 32)
		if err != nil || m == 0 || m > 0o7777 {
			return Add{}, fmt.Errorf("add %q: mode %q is not an octal mode between 1 and 7777", s, parts[2])
		}
		a.Mode = fs.FileMode(m)
	}
	return a, nil
}

// addHostFiles copies a.Src (recursively) into the merged tree at a.Dst. Owners are root;
// times, modes and symlink targets come from the host.
func addHostFiles(m *layerapply.Merger, a Add) error {
	return filepath.WalkDir(a.Src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("add %s: %w", a.Src, err)
		}
		rel, err := filepath.Rel(a.Src, p)
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return fmt.Errorf("add %s: %w", p, err)
		}
		hdr := &tar.Header{
			Name:    path.Join(a.Dst, filepath.ToSlash(rel)),
			Mode:    int64(unixPerm(info.Mode())),
			ModTime: info.ModTime(),
		}
		if rel == "." && a.Mode != 0 {
			hdr.Mode = int64(a.Mode)
		}
		switch {
		case info.Mode().IsRegular():
			hdr.Typeflag, hdr.Size = tar.TypeReg, info.Size()
			f, err := os.Open(p)
			if err != nil {
				return fmt.Errorf("add %s: %w", p, err)
			}
			defer f.Close()
			if err := m.Add(hdr, f); err != nil {
				return fmt.Errorf("add %s as %s: %w", p, hdr.Name, err)
			}
			return nil
		case info.IsDir():
			hdr.Typeflag = tar.TypeDir
		case info.Mode()&fs.ModeSymlink != 0:
			t, err := os.Readlink(p)
			if err != nil {
				return fmt.Errorf("add %s: %w", p, err)
			}
			hdr.Typeflag, hdr.Linkname = tar.TypeSymlink, t
		default:
			return fmt.Errorf("add %s: unsupported file type %v", p, info.Mode().Type())
		}
		if err := m.Add(hdr, nil); err != nil {
			return fmt.Errorf("add %s as %s: %w", p, hdr.Name, err)
		}
		return nil
	})
}

// unixPerm turns Go's mode bits into the Unix permission word with setuid, setgid, sticky.
func unixPerm(m fs.FileMode) uint32 {
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
