package img2ext4

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/img2ext4/img2ext4/layerapply"
)

// Add names a host file or directory to put into the image. Additions go through the
// same [layerapply.RootFS] as [WithMutate], before the mutations.
type Add struct {
	// Src is the host path. A directory is copied with everything below it; symbolic links
	// are copied as links, never followed. New entries are owned by root and keep the
	// host's permission bits and modification time.
	Src string
	// Dst is the path inside the image. It resolves inside the image root: symlinked
	// parents are followed there, missing parents are created (0755, root-owned). A
	// directory added onto an existing directory merges into it, which keeps its own
	// metadata; a file or symlink replaces an existing file or symlink, and is refused
	// onto an existing directory.
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

// addHostFiles copies a.Src (recursively) into the image at a.Dst through root. New
// entries are owned by root, with the host's permission bits, modification time and
// symlink targets. A directory merges into an existing directory, which keeps its own
// metadata (unless a.Mode is set); a file or symlink replaces an existing file or symlink,
// never a directory.
func addHostFiles(root layerapply.RootFS, a Add) error {
	if parent := path.Dir(path.Clean("/" + a.Dst)); parent != "/" {
		if err := root.MkdirAll(parent, 0o755); err != nil {
			return fmt.Errorf("add %s: %w", a.Src, err)
		}
	}
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
		dst := path.Join("/", a.Dst, filepath.ToSlash(rel))
		perm := info.Mode() & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky)
		if rel == "." && a.Mode != 0 {
			perm = goPerm(a.Mode)
		}
		old, err := root.Lstat(dst)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("add %s as %s: %w", p, dst, err)
		}
		if info.IsDir() {
			if old != nil && old.IsDir() {
				if rel == "." && a.Mode != 0 {
					if err := root.Chmod(dst, perm); err != nil {
						return fmt.Errorf("add %s as %s: %w", p, dst, err)
					}
				}
				return nil // merge into the existing directory
			}
			if old != nil {
				if err := root.RemoveAll(dst); err != nil {
					return fmt.Errorf("add %s as %s: %w", p, dst, err)
				}
			}
			if err := root.MkdirAll(dst, perm); err != nil {
				return fmt.Errorf("add %s as %s: %w", p, dst, err)
			}
			return root.Chtimes(dst, info.ModTime(), info.ModTime())
		}
		if old != nil {
			if old.IsDir() {
				return fmt.Errorf("add %s as %s: %s is a directory in the image; only a directory can be added onto a directory", p, dst, dst)
			}
			if err := root.RemoveAll(dst); err != nil {
				return fmt.Errorf("add %s as %s: %w", p, dst, err)
			}
		}
		switch {
		case info.Mode().IsRegular():
			f, err := os.Open(p)
			if err != nil {
				return fmt.Errorf("add %s: %w", p, err)
			}
			defer f.Close()
			if err := root.WriteFile(dst, f, perm); err != nil {
				return fmt.Errorf("add %s as %s: %w", p, dst, err)
			}
		case info.Mode()&fs.ModeSymlink != 0:
			t, err := os.Readlink(p)
			if err != nil {
				return fmt.Errorf("add %s: %w", p, err)
			}
			if err := root.Symlink(t, dst); err != nil {
				return fmt.Errorf("add %s as %s: %w", p, dst, err)
			}
		default:
			return fmt.Errorf("add %s: unsupported file type %v", p, info.Mode().Type())
		}
		return root.Chtimes(dst, info.ModTime(), info.ModTime())
	})
}

// goPerm reads m as permission bits, taking setuid, setgid and sticky in either Go's form
// or the Unix one (0o4000, 0o2000, 0o1000, as ParseAdd gives them).
func goPerm(m fs.FileMode) fs.FileMode {
	p := m & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky)
	if m&0o4000 != 0 {
		p |= fs.ModeSetuid
	}
	if m&0o2000 != 0 {
		p |= fs.ModeSetgid
	}
	if m&0o1000 != 0 {
		p |= fs.ModeSticky
	}
	return p
}
