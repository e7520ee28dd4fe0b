package img2ext4

import (
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// writebackInterval is how often a staged output's new data is handed to the disk while
// it is written; a variable so that tests can shorten it.
var writebackInterval = 100 * time.Millisecond

// syncEvery is how many bytes a staged output must have grown by since its last sync
// before the writeback syncs it again; a variable so that tests can change it.
var syncEvery int64 = 128 << 20

// syncFileRange and fdatasync are sync_file_range(2) and fdatasync(2); variables so that
// tests can count their calls.
var (
	syncFileRange = unix.SyncFileRange
	fdatasync     = unix.Fdatasync
)

// startWriteback hands f's data to the disk while f is written, in the background, so
// that the fsync that completes a staged output finds little left to do: the disk works
// while the conversion does. Every writebackInterval it starts the writeback of f's dirty
// pages (sync_file_range with SYNC_FILE_RANGE_WRITE, which does not wait), and each time
// f has grown by syncEvery bytes it syncs it instead (fdatasync, which also writes its
// block allocations and flushes the disk's write cache). Starting the writeback is not
// enough where the disk has a volatile write cache, as a virtual disk often has: the host
// buffers what it is sent, and the final fsync's one cache flush waited for all of it
// (a 1 GB image: 0.3-0.6 s of fsync). Syncing on every tick instead cost more than it
// saved on one core (each sync takes the disk's cache flush and a journal commit).
//
// Growth is read from st_blocks (the data written, delayed allocations included), so
// rewriting blocks f already holds counts for nothing: such writes are left to the
// sync_file_range ticks and the final fsync.
//
// A sync's error is kept and returned by stop, and no sync follows it: Linux reports a
// writeback error once to each open file, so the final fsync on f would not see an error
// that a sync here took. sync_file_range takes none (it does not wait). The returned stop
// ends the writeback and returns once no call is running; call it before f is synced or
// closed, and treat its error as a failed write of f. Writing f concurrently with the
// calls is safe.
func startWriteback(f *os.File) (stop func() error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return func() error { return nil }
	}
	done, exited := make(chan struct{}), make(chan struct{})
	var serr error // the first sync's error; read by stop once the goroutine has exited
	go func() {
		defer close(exited)
		t := time.NewTicker(writebackInterval)
		defer t.Stop()
		var synced int64 // bytes f held at its last sync
		for {
			select {
			case <-done:
				return
			case <-t.C:
				rc.Control(func(fd uintptr) {
					var st unix.Stat_t
					if serr == nil && unix.Fstat(int(fd), &st) == nil && st.Blocks*512 >= synced+syncEvery {
						synced = st.Blocks * 512
						if err := fdatasync(int(fd)); err != nil {
							serr = &os.PathError{Op: "fdatasync", Path: f.Name(), Err: err}
						}
						return
					}
					syncFileRange(int(fd), 0, 0, unix.SYNC_FILE_RANGE_WRITE)
				})
			}
		}
	}()
	return func() error {
		close(done)
		<-exited
		return serr
	}
}
