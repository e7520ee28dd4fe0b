package img2ext4

import (
	"bytes"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

// TestStageFileWriteback checks that a staged output has its dirty pages handed to the
// disk (sync_file_range) while fill is still writing it, on the file being written, and
// that the output is complete once staged.
func TestStageFileWriteback(t *testing.T) {
	oldInterval, oldSync := writebackInterval, syncFileRange
	t.Cleanup(func() { writebackInterval, syncFileRange = oldInterval, oldSync })
	writebackInterval = time.Millisecond
	var (
		filling atomic.Bool
		calls   atomic.Int64
		wantFD  atomic.Int64
		called  = make(chan struct{})
	)
	wantFD.Store(-1)
	syncFileRange = func(fd int, off, n int64, flags int) error {
		err := oldSync(fd, off, n, flags)
		if err == nil && filling.Load() && int64(fd) == wantFD.Load() && calls.Add(1) == 1 {
			close(called)
		}
		return err
	}
	out := filepath.Join(t.TempDir(), "out.img")
	data := bytes.Repeat([]byte("img2ext4"), 1<<17) // 1 MiB
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
			t.Error("no writeback of the output while it was written")
		}
		_, err := f.Write(data)
		return err
	})
	if err != nil {
		t.Fatal(err)
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
}
