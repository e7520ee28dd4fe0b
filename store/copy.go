package store

import (
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// CopyFile copies the content of src to dst, an empty regular file, as cheaply as the
// filesystems allow: a reflink (FICLONE) that shares the blocks where the filesystem can
// (btrfs, XFS), else only the ranges holding data (found with SEEK_DATA and SEEK_HOLE,
// copied with copy_file_range or, across filesystems that refuse it, read and written),
// so that holes stay holes; dst ends at src's size. It reports whether it made a reflink.
// Neither file is closed or synced.
func CopyFile(dst, src *os.File) (reflink bool, err error) {
	fi, err := src.Stat()
	if err != nil {
		return false, fmt.Errorf("store: copy %s: %w", src.Name(), err)
	}
	size := fi.Size()
	if unix.IoctlFileClone(int(dst.Fd()), int(src.Fd())) == nil {
		return true, nil
	}
	for off := int64(0); off < size; {
		data, err := unix.Seek(int(src.Fd()), off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			break // only a hole up to the end
		}
		if err != nil { // no SEEK_DATA: all of it is data
			data = off
		}
		hole, err := unix.Seek(int(src.Fd()), data, unix.SEEK_HOLE)
		if err != nil {
			hole = size
		}
		if err := copyRange(dst, src, data, hole-data); err != nil {
			return false, fmt.Errorf("store: copy %s to %s: %w", src.Name(), dst.Name(), err)
		}
		off = hole
	}
	if err := dst.Truncate(size); err != nil {
		return false, fmt.Errorf("store: copy %s to %s: %w", src.Name(), dst.Name(), err)
	}
	return false, nil
}

// copyRange copies n bytes at off from src to the same offset of dst.
func copyRange(dst, src *os.File, off, n int64) error {
	roff, woff := off, off
	for n > 0 {
		m, err := unix.CopyFileRange(int(src.Fd()), &roff, int(dst.Fd()), &woff, int(min(n, 1<<30)), 0)
		if err != nil || m == 0 {
			break // not supported here: copy through memory from where it stopped
		}
		n -= int64(m)
	}
	if n == 0 {
		return nil
	}
	_, err := io.Copy(io.NewOffsetWriter(dst, woff), io.NewSectionReader(src, roff, n))
	return err
}
