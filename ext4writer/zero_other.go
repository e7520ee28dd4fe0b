//go:build !linux

package ext4writer

import "os"

// punchHole is not implemented here: zeros are written instead.
func punchHole(f *os.File, off, n int64) error { return errPunchUnsupported }
