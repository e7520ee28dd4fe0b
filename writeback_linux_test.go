package img2ext4

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

// TestStageFileWriteback checks that a staged output is handed to the disk while fill is
// still writing it, on the file being written: its writeback started (sync_file_range)
// while it has grown by less than syncEvery since its last sync, and synced (fdatasync,
// which also flushes the disk's write cache) once it has grown by more, and not again
// before it grows again; and that the output is complete once staged.
func TestStageFileWriteback(t *testing.T) {
	oldInterval, oldEvery, oldRange, oldSync := writebackInterval, syncEvery, syncFileRange, fdatasync
	t.Cleanup(func() {
		writebackInterval, syncEvery, syncFileRange, fdatasync = oldInterval, oldEvery, oldRange, oldSync
	})
	writebackInterval = time.Millisecond
	data := bytes.Repeat([]byte("img2ext4"), 1<<17) // 1 MiB
	for _, tc := range []struct {
		name      string
		every     int64
		wantSyncs bool // fdatasync expected, else sync_file_range only
	}{
		{"grown past syncEvery", 512 << 10, true},
		{"grown less", 1 << 40, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			syncEvery = tc.every
			var (
				filling       atomic.Bool
				ranges, syncs atomic.Int64
				wantFD        atomic.Int64
				called        = make(chan struct{})
			)
			wantFD.Store(-1)
			count := func(fd int, n *atomic.Int64, expected bool) {
				if filling.Load() && int64(fd) == wantFD.Load() && n.Add(1) == 1 && expected {
					close(called)
				}
			}
			syncFileRange = func(fd int, off, n int64, flags int) error {
				err := oldRange(fd, off, n, flags)
				count(fd, &ranges, !tc.wantSyncs)
				return err
			}
			fdatasync = func(fd int) error {
				err := oldSync(fd)
				count(fd, &syncs, tc.wantSyncs)
				return err
			}
			out := filepath.Join(t.TempDir(), "out.img")
			st, err := stageFile(out, "write image", func(f *os.File) error {
				wantFD.Store(int64(f.Fd()))
				filling.Store(true)
				defer filling.Store(false)
				if _, err := f.Write(data); err != nil {
					return err
				}
				select {
				case <-called:
				case <-time.After(time.Minute): // a bound on a hang, not a timing check
					t.Errorf("no writeback of the output while it was written (%d syncs, %d writebacks started)", syncs.Load(), ranges.Load())
				}
				if tc.wantSyncs {
					// Not grown since: the next ticks only start the writeback.
					r0 := ranges.Load()
					for end := time.Now().Add(time.Minute); ranges.Load() < r0+2 && time.Now().Before(end); {
						time.Sleep(time.Millisecond)
					}
					if n := syncs.Load(); n != 1 {
						t.Errorf("%d syncs of an output that grew past syncEvery once, want 1", n)
					}
				}
				_, err := f.Write(data)
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			if !tc.wantSyncs && syncs.Load() > 0 {
				t.Errorf("%d syncs of an output grown by less than syncEvery", syncs.Load())
			}
			if err := st.commit(); err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, append(data, data...)) {
				t.Errorf("output has %d bytes, want the %d written", len(got), 2*len(data))
			}
		})
	}
}

// TestStageFileWritebackError checks that a sync of the background writeback that fails
// fails the staged output: Linux reports a writeback error once per open file, so the
// final fsync would not see it again, and the output would be published as if it were
// whole.
func TestStageFileWritebackError(t *testing.T) {
	oldInterval, oldEvery, oldSync := writebackInterval, syncEvery, fdatasync
	t.Cleanup(func() { writebackInterval, syncEvery, fdatasync = oldInterval, oldEvery, oldSync })
	writebackInterval, syncEvery = time.Millisecond, 4096
	eio := errors.New("input/output error (injected)")
	failed := make(chan struct{})
	var once atomic.Bool
	fdatasync = func(int) error {
		if once.CompareAndSwap(false, true) {
			close(failed)
		}
		return eio
	}
	dir := t.TempDir()
	out := filepath.Join(dir, "out.img")
	_, err := stageFile(out, "write image", func(f *os.File) error {
		if _, err := f.Write(bytes.Repeat([]byte{1}, 1<<20)); err != nil {
			return err
		}
		select {
		case <-failed:
		case <-time.After(time.Minute): // a bound on a hang, not a timing check
			t.Error("no sync of the output while it was written")
		}
		return nil
	})
	if !errors.Is(err, eio) {
		t.Fatalf("stageFile after a failed sync: %v, want the sync's error", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("left behind after a failed sync: %v", ents)
	}
}
