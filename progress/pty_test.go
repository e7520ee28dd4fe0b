//go:build linux

package progress

import (
	"bytes"
	"io"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// openPTY returns the two ends of a new pseudo-terminal of cols columns, or skips the test
// when the system has none.
func openPTY(t *testing.T, cols uint16) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminal to test with: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatalf("unlockpt: %v", err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatalf("ptsname: %v", err)
	}
	s, err := os.OpenFile("/dev/pts/"+strconv.Itoa(n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("open the pty's slave: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	setCols(t, m, cols)
	return m, s
}

func setCols(t *testing.T, f *os.File, cols uint16) {
	t.Helper()
	if err := unix.IoctlSetWinsize(int(f.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: 24, Col: cols}); err != nil {
		t.Fatalf("set the window size: %v", err)
	}
}

// TestTTYWidthFromTerminal draws on a real pseudo-terminal: ModeAuto picks the TTY
// display, and every line fits the width the kernel reports, asked again at each redraw.
func TestTTYWidthFromTerminal(t *testing.T) {
	master, slave := openPTY(t, 42)
	var got bytes.Buffer
	read := make(chan struct{})
	go func() {
		defer close(read)
		io.Copy(&got, master) // ends with EIO once the slave is closed
	}()
	tick := make(chan time.Time)
	flushed := make(chan struct{})
	r := NewRenderer(slave, ModeAuto, WithTicker(tick), withFlushed(flushed))
	if r.Mode() != ModeTTY {
		t.Fatalf("mode %v on a terminal, want tty", r.Mode())
	}
	f := r.Func()
	f(withSpeed(dl(0, digest0, 1000*mib, 1023*mib), 1000*mib, time.Second))
	f(withSpeed(ap(1, digest1, 123*mib), 12*mib, time.Second))
	tick <- time.Time{}
	<-flushed
	setCols(t, master, 100)
	f(withSpeed(dl(0, digest0, 1001*mib, 1023*mib), 1000*mib, time.Second))
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	slave.Close()
	<-read

	// The terminal turns each \n into \r\n; escapes and carriage returns take no column.
	lines := strings.Split(strings.TrimSuffix(escapes.ReplaceAllString(got.String(), ""), "\n"), "\n")
	if len(lines) != 4 {
		t.Fatalf("got %d lines, want two frames of two: %q", len(lines), lines)
	}
	for i, l := range lines {
		width := 42
		if i >= 2 {
			width = 100
		}
		if len(l) > width-1 {
			t.Errorf("line %q has %d columns on a terminal of %d", l, len(l), width)
		}
	}
	checkOutput(t, "narrow frame", strings.Join(lines[:2], "\n"), ""+
		"012345: Downloading 1000.0 MiB/1023.0 MiB\n"+
		"fedcba9876: Applying 123.0 MiB 12.0 MiB/s")
	checkOutput(t, "wide frame", strings.Join(lines[2:], "\n"), ""+
		"0123456789ab: Downloading [===================>] 1001.0 MiB/1023.0 MiB 1000.0 MiB/s\n"+
		"fedcba987654: Applying    123.0 MiB 12.0 MiB/s")
}
