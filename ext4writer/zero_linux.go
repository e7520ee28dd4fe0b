package ext4writer

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// punchHole deallocates [off, off+n) of a regular file, which then reads
// back zeros; filesystems without hole punching give errPunchUnsupported.
func punchHole(f *os.File, off, n int64) error {
	err := unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, n)
	if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EINVAL) {
		return errPunchUnsupported
	}
	return err
}
