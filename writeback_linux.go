package img2ext4

import (
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// writebackInterval is how often a staged output's dirty pages are handed to the disk
// while it is written; a variable so that tests can shorten it.
var writebackInterval = 100 * time.Millisecond

// syncFileRange is sync_file_range(2); a variable so that tests can count its calls.
var syncFileRange = unix.SyncFileRange

// startWriteback starts writing f's dirty pages to the disk every writebackInterval, in
// the background (sync_file_range with SYNC_FILE_RANGE_WRITE, which starts the writes
// and does not wait for them), so that the fsync that completes a staged output waits
// for the last part of the file instead of all of it: the disk works while the
// conversion does. It is best effort: errors are left to that fsync, which reports
// them. The returned stop ends it and returns once no call is running; call it before
// f is synced or closed. Writing f concurrently with the calls is safe.
func startWriteback(f *os.File) (stop func()) {
	rc, err := f.SyscallConn()
	if err != nil {
		return func() {}
	}
	done, exited := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(exited)
		t := time.NewTicker(writebackInterval)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				rc.Control(func(fd uintptr) { syncFileRange(int(fd), 0, 0, unix.SYNC_FILE_RANGE_WRITE) })
			}
		}
	}()
	return func() {
		close(done)
		<-exited
	}
}
