package progress

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	kib = 1 << 10
	mib = 1 << 20

	digest0 = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	digest1 = "sha256:fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210"
)

// fakeClock is a clock that moves only when told to.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// lockedBuffer is a bytes.Buffer safe to read while the renderer writes.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// Take returns what was written since the last call.
func (b *lockedBuffer) Take() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.buf.String()
	b.buf.Reset()
	return s
}

// harness drives a Renderer with a fake clock and a manual ticker.
type harness struct {
	t       *testing.T
	clk     *fakeClock
	tick    chan time.Time
	flushed chan struct{}
	out     *lockedBuffer
	r       *Renderer
	f       Func
}

func newHarness(t *testing.T, mode Mode, opts ...Option) *harness {
	t.Helper()
	h := &harness{
		t:       t,
		clk:     newFakeClock(),
		tick:    make(chan time.Time),
		flushed: make(chan struct{}),
		out:     new(lockedBuffer),
	}
	opts = append([]Option{WithClock(h.clk.Now), WithTicker(h.tick), withFlushed(h.flushed)}, opts...)
	h.r = NewRenderer(h.out, mode, opts...)
	h.f = h.r.Func()
	t.Cleanup(func() { h.r.Close() })
	return h
}

// step makes the renderer draw once and returns what it wrote.
func (h *harness) step() string {
	h.tick <- time.Time{}
	<-h.flushed
	return h.out.Take()
}

// withFlushed makes the renderer send on c after each periodic flush.
func withFlushed(c chan<- struct{}) Option {
	return func(o *options) { o.flushed = c }
}

// close closes the renderer and returns what it wrote since the last step.
func (h *harness) close() string {
	h.t.Helper()
	if err := h.r.Close(); err != nil {
		h.t.Fatalf("Close: %v", err)
	}
	return h.out.Take()
}

func dl(layer int, digest string, done, total int64) Event {
	return Event{Phase: PhaseDownload, Layer: layer, Layers: 2, Digest: digest, Done: done, Total: total}
}

func ap(layer int, digest string, done int64) Event {
	return Event{Phase: PhaseApply, Layer: layer, Layers: 2, Digest: digest, Done: done, Total: -1}
}

func withSpeed(e Event, bps float64, elapsed time.Duration) Event {
	e.BytesPerSec, e.Elapsed = bps, elapsed
	return e
}

func complete(e Event) Event {
	e.Complete = true
	return e
}

func checkOutput(t *testing.T, what, got, want string) {
	t.Helper()
	if got != want {
		t.Errorf("%s:\ngot:\n%s\nwant:\n%s", what, got, want)
	}
}

func TestPlain(t *testing.T) {
	h := newHarness(t, ModePlain)
	h.f(Event{Phase: PhaseResolve, Layer: -1, Total: -1})
	h.f(withSpeed(complete(Event{Phase: PhaseResolve, Layer: -1, Layers: 2, Total: -1}), 0, 200*time.Millisecond))
	h.f(dl(0, digest0, 0, 2*mib))
	h.f(withSpeed(dl(0, digest0, 512*kib, 2*mib), mib, 500*time.Millisecond))
	checkOutput(t, "first step", h.step(), ""+
		"resolving\n"+
		"resolved 2 layers in 0.2s\n"+
		"[1/2] 0123456789ab downloading 0 B / 2.0 MiB (0%)\n")

	h.clk.Advance(time.Second)
	h.f(withSpeed(dl(0, digest0, mib, 2*mib), mib, time.Second))
	checkOutput(t, "throttled step", h.step(), "")

	h.clk.Advance(1500 * time.Millisecond)
	checkOutput(t, "step after 2.5s", h.step(),
		"[1/2] 0123456789ab downloading 1.0 MiB / 2.0 MiB (50%), 1.0 MiB/s\n")

	h.f(withSpeed(complete(dl(0, digest0, 2*mib, 2*mib)), 800*kib, 2560*time.Millisecond))
	h.f(ap(0, digest0, 0))
	h.f(withSpeed(complete(dl(1, digest1, 1000, 1000)), 10000, 100*time.Millisecond))
	h.f(ap(0, digest0, 3*mib)) // superseded by the completion below before it is due
	checkOutput(t, "completions", h.step(), ""+
		"[1/2] 0123456789ab downloaded 2.0 MiB in 2.6s (800.0 KiB/s)\n"+
		"[1/2] 0123456789ab applying 0 B\n"+
		"[2/2] fedcba987654 downloaded 1000 B in 0.1s (9.8 KiB/s)\n")

	h.f(withSpeed(complete(ap(0, digest0, 4*mib)), 4*mib, time.Second))
	h.f(complete(ap(1, digest1, 1000)))
	h.f(Event{Phase: PhaseFinalize, Layer: -1, Layers: 2, Total: -1})
	h.f(Event{Phase: PhaseFinalize, Layer: -1, Layers: 2, Done: mib, Total: -1})
	h.f(withSpeed(complete(Event{Phase: PhaseFinalize, Layer: -1, Layers: 2, Done: 5 * mib, Total: -1}), 0, 300*time.Millisecond))
	h.f(withSpeed(complete(Event{Phase: PhaseDone, Layer: -1, Layers: 2, Total: -1}), 0, 4*time.Second))
	checkOutput(t, "close", h.close(), ""+
		"[1/2] 0123456789ab applied 4.0 MiB in 1.0s (4.0 MiB/s)\n"+
		"[2/2] fedcba987654 applied 1000 B\n"+
		"finalizing\n"+
		"finalized 5.0 MiB in 0.3s\n"+
		"done in 4.0s\n")
}

func TestPlainCloseFlushesThrottled(t *testing.T) {
	h := newHarness(t, ModePlain)
	h.f(dl(0, "", 0, -1))
	h.f(dl(0, "", 3*kib, -1))
	checkOutput(t, "step", h.step(), "[1/2] layer 1 downloading 0 B\n")
	h.f(dl(0, "", 7*kib, -1))
	checkOutput(t, "close", h.close(), "[1/2] layer 1 downloading 7.0 KiB\n")
	h.f(dl(0, "", 9*kib, -1)) // after Close: ignored
	if err := h.r.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	checkOutput(t, "after close", h.out.Take(), "")
}

func TestJSON(t *testing.T) {
	h := newHarness(t, ModeJSON)
	start := dl(0, digest0, 0, 10*kib)
	h.f(start)
	for i := int64(1); i <= 5; i++ {
		h.f(dl(0, digest0, i*kib, 10*kib))
	}
	h.f(dl(1, digest1, 0, kib))
	first := h.step()

	h.clk.Advance(50 * time.Millisecond)
	h.f(dl(0, digest0, 6*kib, 10*kib))
	if got := h.step(); got != "" {
		t.Errorf("step within 100ms wrote %q, want nothing", got)
	}

	h.clk.Advance(50 * time.Millisecond)
	second := h.step()
	last := complete(withSpeed(dl(0, digest0, 10*kib, 10*kib), 5*kib, 2*time.Second))
	h.f(dl(0, digest0, 8*kib, 10*kib))
	h.f(last)
	third := h.close()

	decode := func(what, s string) []Event {
		t.Helper()
		var evs []Event
		for _, line := range strings.Split(strings.TrimSuffix(s, "\n"), "\n") {
			var e Event
			if err := json.Unmarshal([]byte(line), &e); err != nil {
				t.Fatalf("%s: line %q: %v", what, line, err)
			}
			evs = append(evs, e)
		}
		return evs
	}
	check := func(what, s string, want ...Event) {
		t.Helper()
		got := decode(what, s)
		if len(got) != len(want) {
			t.Fatalf("%s: got %d lines, want %d:\n%s", what, len(got), len(want), s)
		}
		for i := range want {
			if got[i] != want[i] {
				t.Errorf("%s: line %d = %+v, want %+v", what, i, got[i], want[i])
			}
		}
	}
	// Milestones come first, in order; the start of layer 0 was written
	// just now, so its latest progress waits for the next 100ms.
	check("first", first, start, dl(1, digest1, 0, kib))
	check("second", second, dl(0, digest0, 6*kib, 10*kib))
	check("third", third, last)

	wantLine := `{"type":"progress","phase":"download","layer":0,"layers":2,"digest":"` + digest0 +
		`","done":10240,"total":10240,"bytes_per_sec":5120,"complete":true,"elapsed_ns":2000000000}` + "\n"
	checkOutput(t, "encoding", third, wantLine)
}

// escapes matches the ANSI sequences the TTY renderer writes.
var escapes = regexp.MustCompile(`\x1b\[[0-9]*[A-Za-z]|\r`)

func TestTTY(t *testing.T) {
	h := newHarness(t, ModeTTY, WithWidth(80))
	h.f(withSpeed(complete(Event{Phase: PhaseResolve, Layer: -1, Layers: 2, Total: -1}), 0, 200*time.Millisecond))
	h.f(withSpeed(dl(0, digest0, mib, 2*mib), 512*kib, 2*time.Second))
	checkOutput(t, "frame 1", h.step(), ""+
		"\r\x1b[2KResolved image: 2 layers in 0.2s\n"+
		"\r\x1b[2K0123456789ab: Downloading [==========>         ] 1.0 MiB/2.0 MiB 512.0 KiB/s\n"+
		"\r\x1b[2Klayer 2     : Waiting\n")

	checkOutput(t, "idle frame", h.step(), "")

	h.f(withSpeed(complete(dl(0, digest0, 2*mib, 2*mib)), 512*kib, 4*time.Second))
	h.f(withSpeed(ap(0, digest0, 3*mib), 3*mib, time.Second))
	h.f(withSpeed(dl(1, digest1, 0, 100*mib), 0, 0))
	checkOutput(t, "frame 2", h.step(), ""+
		"\x1b[3A"+
		"\r\x1b[2KResolved image: 2 layers in 0.2s\n"+
		"\r\x1b[2K0123456789ab: Applying    3.0 MiB 3.0 MiB/s\n"+
		"\r\x1b[2Kfedcba987654: Downloading [>                   ] 0 B/100.0 MiB\n")

	h.f(complete(ap(0, digest0, 4*mib)))
	h.f(complete(ap(1, digest1, 100*mib)))
	h.f(Event{Phase: PhaseFinalize, Layer: -1, Layers: 2, Done: mib, Total: 4 * mib})
	checkOutput(t, "frame 3", h.step(), ""+
		"\x1b[3A"+
		"\r\x1b[2KResolved image: 2 layers in 0.2s\n"+
		"\r\x1b[2K0123456789ab: Done        [====================] 4.0 MiB\n"+
		"\r\x1b[2Kfedcba987654: Done        [====================] 100.0 MiB\n"+
		"\r\x1b[2KFinalizing 1.0 MiB/4.0 MiB\n")

	h.f(withSpeed(complete(Event{Phase: PhaseDone, Layer: -1, Layers: 2, Total: -1}), 0, 5*time.Second))
	checkOutput(t, "final frame", h.close(), ""+
		"\x1b[4A"+
		"\r\x1b[2KResolved image: 2 layers in 0.2s\n"+
		"\r\x1b[2K0123456789ab: Done        [====================] 4.0 MiB\n"+
		"\r\x1b[2Kfedcba987654: Done        [====================] 100.0 MiB\n"+
		"\r\x1b[2KDone in 5.0s\n")
}

func TestTTYTruncatesToWidth(t *testing.T) {
	for _, width := range []int{1, 10, 40, 79} {
		h := newHarness(t, ModeTTY, WithWidth(width))
		h.f(Event{Phase: PhaseResolve, Layer: -1, Total: -1})
		h.f(withSpeed(dl(0, digest0, 1000*mib, 1023*mib), 1000*mib, time.Second))
		h.f(dl(1, "sha256:\x1b[31mevil", 0, -1))
		out := h.close()
		if !strings.Contains(out, "\x1b[2K") {
			t.Errorf("width %d: no erase-line in %q", width, out)
		}
		lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
		if len(lines) != 3 {
			t.Fatalf("width %d: got %d lines, want 3: %q", width, len(lines), out)
		}
		for _, l := range lines {
			visible := escapes.ReplaceAllString(l, "")
			if len(visible) > max(width-1, 1) {
				t.Errorf("width %d: line %q has %d columns", width, visible, len(visible))
			}
			if strings.Count(l, "\x1b") != 1 {
				t.Errorf("width %d: line %q carries escapes besides erase-line", width, l)
			}
		}
	}
}

func TestModeResolution(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "out"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tests := []struct {
		name string
		w    *Renderer
		want Mode
	}{
		{"auto buffer", NewRenderer(new(bytes.Buffer), ModeAuto), ModePlain},
		{"auto file", NewRenderer(f, ModeAuto), ModePlain},
		{"tty forced", NewRenderer(new(bytes.Buffer), ModeTTY), ModeTTY},
		{"json", NewRenderer(new(bytes.Buffer), ModeJSON), ModeJSON},
		{"none", NewRenderer(new(bytes.Buffer), ModeNone), ModeNone},
		{"nil writer", NewRenderer(nil, ModeTTY), ModeNone},
		{"unknown mode", NewRenderer(new(bytes.Buffer), Mode(42)), ModePlain},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.w.Mode(); got != tc.want {
				t.Errorf("Mode() = %v, want %v", got, tc.want)
			}
			tc.w.Func()(dl(0, digest0, 0, 1))
			if err := tc.w.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
	}
}

func TestNoneWritesNothing(t *testing.T) {
	var buf bytes.Buffer
	r := NewRenderer(&buf, ModeNone)
	f := r.Func()
	f(dl(0, digest0, 0, 1))
	f(complete(dl(0, digest0, 1, 1)))
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if buf.Len() != 0 {
		t.Errorf("ModeNone wrote %q", buf.String())
	}
}

// blockingWriter blocks every Write until release is closed.
type blockingWriter struct {
	release chan struct{}
	entered chan struct{}
	once    sync.Once
	n       int
}

func (w *blockingWriter) Write(p []byte) (int, error) {
	w.once.Do(func() { close(w.entered) })
	<-w.release
	w.n += len(p)
	return len(p), nil
}

// TestCallbackDoesNotBlock feeds events while the writer is stuck: the
// callback must keep returning, whatever the mode.
func TestCallbackDoesNotBlock(t *testing.T) {
	for _, mode := range []Mode{ModeTTY, ModePlain, ModeJSON} {
		t.Run(mode.String(), func(t *testing.T) {
			w := &blockingWriter{release: make(chan struct{}), entered: make(chan struct{})}
			r := NewRenderer(w, mode, WithInterval(time.Millisecond))
			f := r.Func()
			f(dl(0, digest0, 0, 1)) // something to write, so the goroutine gets stuck
			select {
			case <-w.entered:
			case <-time.After(10 * time.Second):
				t.Fatal("renderer never wrote")
			}
			finished := make(chan struct{})
			go func() {
				defer close(finished)
				for i := range 10000 {
					e := dl(i%8, digest0, int64(i), 10000)
					e.Complete = i%3 == 0 // many milestones, to fill the queue
					f(e)
				}
			}()
			select {
			case <-finished:
			case <-time.After(10 * time.Second):
				t.Fatal("callback blocked behind a stuck writer")
			}
			close(w.release)
			if err := r.Close(); err != nil {
				t.Fatal(err)
			}
			if w.n == 0 {
				t.Error("nothing written after release")
			}
		})
	}
}

// TestConcurrent hammers the callback from several goroutines while the
// renderer draws; run it with -race.
func TestConcurrent(t *testing.T) {
	for _, mode := range []Mode{ModeTTY, ModePlain, ModeJSON} {
		t.Run(mode.String(), func(t *testing.T) {
			var out lockedBuffer
			r := NewRenderer(&out, mode, WithInterval(time.Millisecond), WithWidth(100))
			f := r.Func()
			const layers, events = 8, 2000
			var wg sync.WaitGroup
			for l := range layers {
				wg.Go(func() {
					d := strings.Repeat(string(rune('a'+l)), 64)
					for i := range events {
						f(Event{Phase: PhaseDownload, Layer: l, Layers: layers, Digest: "sha256:" + d, Done: int64(i), Total: events})
					}
					f(Event{Phase: PhaseDownload, Layer: l, Layers: layers, Digest: "sha256:" + d, Done: events, Total: events, Complete: true})
				})
			}
			wg.Wait()
			if err := r.Close(); err != nil {
				t.Fatal(err)
			}
			got := out.Take()
			for l := range layers {
				d := strings.Repeat(string(rune('a'+l)), 12)
				var want string
				switch mode {
				case ModeTTY:
					want = d + ": Downloaded"
				case ModePlain:
					want = d + " downloaded"
				case ModeJSON:
					want = `"layer":` + string(rune('0'+l)) + `,"layers":8`
				}
				if !strings.Contains(got, want) {
					t.Errorf("output lacks %q", want)
				}
			}
		})
	}
}

type failingWriter struct{ calls int }

func (w *failingWriter) Write(p []byte) (int, error) {
	w.calls++
	return 0, os.ErrClosed
}

func TestWriteErrorIsSticky(t *testing.T) {
	w := new(failingWriter)
	tick := make(chan time.Time)
	r := NewRenderer(w, ModePlain, WithTicker(tick))
	f := r.Func()
	f(dl(0, digest0, 0, 1))
	tick <- time.Time{}
	f(complete(dl(0, digest0, 1, 1)))
	err := r.Close()
	if !errors.Is(err, os.ErrClosed) || !strings.Contains(err.Error(), "write progress") {
		t.Fatalf("Close = %v, want a write progress error", err)
	}
	if w.calls != 1 {
		t.Errorf("writer called %d times after failing, want 1", w.calls)
	}
}

func TestTTYStrayLayer(t *testing.T) {
	h := newHarness(t, ModeTTY)
	h.f(Event{Phase: PhaseDownload, Layer: 1_000_000, Layers: 1, Total: -1, Done: 5})
	h.f(Event{Phase: PhaseApply, Layer: 3, Total: -1})
	checkOutput(t, "frame", h.close(), ""+
		"\r\x1b[2Klayer 1     : Waiting\n"+
		"\r\x1b[2Klayer 4     : Applying    0 B\n"+
		"\r\x1b[2Klayer 1000001: Downloading 5 B\n")
}

func TestTooManyLayers(t *testing.T) {
	h := newHarness(t, ModePlain)
	for i := range maxLayers + 10 {
		h.f(Event{Phase: PhaseDownload, Layer: i, Total: -1})
	}
	out := h.close()
	if got := strings.Count(out, "\n"); got != maxLayers {
		t.Errorf("wrote %d lines, want one per tracked layer (%d)", got, maxLayers)
	}
}

func BenchmarkFunc(b *testing.B) {
	for _, mode := range []Mode{ModeTTY, ModePlain, ModeJSON} {
		b.Run(mode.String(), func(b *testing.B) {
			r := NewRenderer(io.Discard, mode)
			defer r.Close()
			f := r.Func()
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				var i int64
				for pb.Next() {
					f(Event{Phase: PhaseDownload, Layer: int(i % 4), Layers: 4, Digest: digest0, Done: i, Total: 1 << 30})
					i++
				}
			})
		})
	}
}

// local is the one event of a layer whose blob is read in place.
func local(layer int, digest string, size int64) Event {
	return Event{Phase: PhaseLocal, Layer: layer, Layers: 2, Digest: digest, Done: size, Total: size, Complete: true}
}

// TestLocalLayers checks that a layer read in place shows as local, with its size and no
// speed, time or bar, and never as downloaded.
func TestLocalLayers(t *testing.T) {
	h := newHarness(t, ModePlain)
	h.f(local(0, digest0, 2*mib))
	h.f(complete(withSpeed(dl(1, digest1, 1000, 1000), 10000, 100*time.Millisecond)))
	checkOutput(t, "plain", h.close(), ""+
		"[1/2] 0123456789ab local 2.0 MiB\n"+
		"[2/2] fedcba987654 downloaded 1000 B in 0.1s (9.8 KiB/s)\n")

	h = newHarness(t, ModeTTY, WithWidth(80))
	h.f(withSpeed(complete(Event{Phase: PhaseResolve, Layer: -1, Layers: 2, Total: -1}), 0, 200*time.Millisecond))
	h.f(local(0, digest0, 2*mib))
	h.f(local(1, digest1, 100*mib))
	checkOutput(t, "tty", h.step(), ""+
		"\r\x1b[2KResolved image: 2 layers in 0.2s\n"+
		"\r\x1b[2K0123456789ab: Local       2.0 MiB/2.0 MiB\n"+
		"\r\x1b[2Kfedcba987654: Local       100.0 MiB/100.0 MiB\n")
}
