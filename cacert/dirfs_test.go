package cacert_test

// A test-only layerapply.RootFS over a host directory, with chroot semantics through
// trusttest.Resolve. It stands in until layerapply's own implementations are on main.

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/img2ext4/img2ext4/internal/trusttest"
	"github.com/img2ext4/img2ext4/layerapply"
)

type dirFS struct{ root string }

var _ layerapply.RootFS = dirFS{}

var fixedTime = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

func (d dirFS) resolve(name string, follow bool) (string, error) {
	return trusttest.Resolve(d.root, name, follow)
}

func (d dirFS) Lstat(name string) (fs.FileInfo, error) {
	p, err := d.resolve(name, false)
	if err != nil {
		return nil, err
	}
	return os.Lstat(p)
}

func (d dirFS) Stat(name string) (fs.FileInfo, error) {
	p, err := d.resolve(name, true)
	if err != nil {
		return nil, err
	}
	return os.Lstat(p)
}

func (d dirFS) ReadDir(name string) ([]fs.DirEntry, error) {
	p, err := d.resolve(name, false)
	if err != nil {
		return nil, err
	}
	if info, err := os.Lstat(p); err != nil || !info.IsDir() {
		return nil, &fs.PathError{Op: "readdir", Path: name, Err: errors.New("not a directory")}
	}
	return os.ReadDir(p)
}

func (d dirFS) Readlink(name string) (string, error) {
	p, err := d.resolve(name, false)
	if err != nil {
		return "", err
	}
	return os.Readlink(p)
}

func (d dirFS) Open(name string) (fs.File, error) {
	p, err := d.resolve(name, true)
	if err != nil {
		return nil, err
	}
	return os.Open(p)
}

func (d dirFS) WriteFile(name string, r io.Reader, perm fs.FileMode) error {
	p, err := d.resolve(name, true)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	info, statErr := os.Lstat(p)
	if statErr == nil {
		f, err := os.OpenFile(p, os.O_WRONLY|os.O_TRUNC, 0)
		if err != nil {
			return err
		}
		if _, err := io.Copy(f, r); err != nil {
			f.Close()
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
		return os.Chtimes(p, info.ModTime(), info.ModTime())
	}
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Chmod(p, perm); err != nil {
		return err
	}
	return os.Chtimes(p, fixedTime, fixedTime)
}

func (d dirFS) MkdirAll(name string, perm fs.FileMode) error {
	cur := "/"
	for _, part := range strings.Split(strings.Trim(path.Clean("/"+name), "/"), "/") {
		if part == "" {
			continue
		}
		cur = path.Join(cur, part)
		p, err := d.resolve(cur, true)
		if err == nil {
			continue
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		if err := os.Mkdir(p, perm); err != nil {
			return err
		}
	}
	return nil
}

func (d dirFS) parent(name string) (string, error) {
	dir, err := d.resolve(path.Dir(path.Clean("/"+name)), true)
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, path.Base(name)), nil
}

func (d dirFS) Symlink(target, name string) error {
	p, err := d.parent(name)
	if err != nil {
		return err
	}
	return os.Symlink(target, p)
}

func (d dirFS) Link(oldname, newname string) error {
	o, err := d.resolve(oldname, false)
	if err != nil {
		return err
	}
	n, err := d.parent(newname)
	if err != nil {
		return err
	}
	return os.Link(o, n)
}

func (d dirFS) RemoveAll(name string) error {
	p, err := d.parent(name)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return err
	}
	return os.RemoveAll(p)
}

func (d dirFS) Chmod(name string, mode fs.FileMode) error {
	p, err := d.resolve(name, false)
	if err != nil {
		return err
	}
	return os.Chmod(p, mode)
}

func (d dirFS) Chown(name string, uid, gid int) error {
	p, err := d.resolve(name, false)
	if err != nil {
		return err
	}
	return os.Lchown(p, uid, gid)
}

func (d dirFS) Chtimes(name string, atime, mtime time.Time) error {
	p, err := d.resolve(name, false)
	if err != nil {
		return err
	}
	return os.Chtimes(p, atime, mtime)
}

func (d dirFS) Setxattr(name, attr string, value []byte) error {
	return errors.ErrUnsupported
}

func (d dirFS) Removexattr(name, attr string) error { return nil }

func (d dirFS) EvalSymlinks(name string) (string, error) {
	p, err := d.resolve(name, true)
	if err != nil {
		return "", err
	}
	if _, err := os.Lstat(p); err != nil {
		return "", err
	}
	rel, err := filepath.Rel(d.root, p)
	if err != nil {
		return "", err
	}
	return filepath.ToSlash(rel), nil
}
