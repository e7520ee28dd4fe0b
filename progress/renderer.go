package progress

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

	"golang.org/x/term"
)

const (
	// defaultInterval is the redraw period of the background goroutine.
	defaultInterval = 100 * time.Millisecond
	// plainEvery is the minimum time between two in-between lines of one layer in ModePlain.
	plainEvery = 2 * time.Second
	// jsonEvery is the minimum time between two in-between lines of one layer in ModeJSON.
	jsonEvery = 100 * time.Millisecond
	// defaultWidth is the terminal width assumed when it cannot be found out.
	defaultWidth = 80
	// maxLayers caps the number of distinct layers tracked; events for more are dropped.
	maxLayers = 4096
	// maxPending caps the milestones waiting to be written; more fold into the latest state.
	maxPending = 4096
)

// Option configures a [Renderer].
//
// Unlike most options in this module, an Option cannot fail: [NewRenderer]
// returns no error, so out-of-range values select the default instead.
type Option func(*options)

type options struct {
	now      func() time.Time
	tick     <-chan time.Time
	interval time.Duration
	width    int
	flushed  chan<- struct{} // tests: told after each periodic flush
}

func makeOptions(opts []Option) options {
	o := options{now: time.Now, interval: defaultInterval}
	for _, opt := range opts {
		if opt != nil {
			opt(&o)
		}
	}
	return o
}

// WithClock sets the clock used to throttle plain and JSON output. It never
// appears in the output. A nil now selects the default, which is [time.Now].
func WithClock(now func() time.Time) Option {
	return func(o *options) {
		if now == nil {
			now = time.Now
		}
		o.now = now
	}
}

// WithTicker makes the renderer redraw each time c delivers a value, instead
// of on its own ticker; [WithInterval] is then ignored. A closed c stops the
// periodic redraws; [Renderer.Close] still writes the final state. This is
// meant for tests, which can then decide when output happens. The default is
// an internal [time.Ticker].
func WithTicker(c <-chan time.Time) Option {
	return func(o *options) { o.tick = c }
}

// WithInterval sets the period of the internal ticker that drives redraws.
// Values of zero or less select the default, which is 100ms.
func WithInterval(d time.Duration) Option {
	return func(o *options) {
		if d <= 0 {
			d = defaultInterval
		}
		o.interval = d
	}
}

// WithWidth sets the width, in columns, that [ModeTTY] lines are truncated
// to fit; the last column stays empty, so that no terminal wraps a line.
// Values of zero or less select the default: the width of the terminal,
// asked again at each redraw, when the writer is one, else 80 columns.
func WithWidth(n int) Option {
	return func(o *options) {
		if n < 0 {
			n = 0
		}
		o.width = n
	}
}

// Renderer writes progress events to an [io.Writer] in one [Mode]. Feed it
// through the callback that [Renderer.Func] returns, and call
// [Renderer.Close] once the work is over.
type Renderer struct {
	w    io.Writer
	mode Mode
	opts options
	fd   int // terminal to ask for its width, or -1

	mu         sync.Mutex
	closed     bool
	layers     map[int]*layerState // by layer index; -1 holds image-level events
	nlayers    int                 // largest Event.Layers seen
	resolve    Event               // latest PhaseResolve event, for the TTY header
	hasResolve bool
	pending    []Event // plain/json: milestones not yet written, in order
	dirty      bool    // tty: state changed since the last frame

	// Owned by the background goroutine.
	lastEmit map[int]time.Time
	scratch  []Event
	drawn    int // tty: lines in the last frame
	buf      bytes.Buffer
	err      error // sticky write error

	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

type layerState struct {
	ev    Event // latest event
	dirty bool  // plain/json: ev not yet written
}

// NewRenderer returns a Renderer that writes to w in the given mode, and
// starts its background goroutine; call [Renderer.Close] to stop it.
// [ModeAuto] becomes [ModeTTY] when w is a terminal (an [os.File] or any
// writer with an Fd method that [term.IsTerminal] accepts) and [ModePlain]
// otherwise. A nil w, or [ModeNone], gives a Renderer that writes nothing
// and starts no goroutine. A Mode value not listed in this package behaves
// as [ModePlain].
//
// The Renderer never closes w.
func NewRenderer(w io.Writer, mode Mode, opts ...Option) *Renderer {
	r := &Renderer{
		w:        w,
		opts:     makeOptions(opts),
		fd:       -1,
		layers:   make(map[int]*layerState),
		lastEmit: make(map[int]time.Time),
	}
	if f, ok := w.(interface{ Fd() uintptr }); ok && (mode == ModeAuto || mode == ModeTTY) {
		if fd := int(f.Fd()); term.IsTerminal(fd) {
			r.fd = fd
		}
	}
	switch {
	case w == nil || mode == ModeNone:
		mode = ModeNone
	case mode == ModeAuto && r.fd >= 0:
		mode = ModeTTY
	case mode == ModeAuto, mode < ModeAuto, mode > ModeNone:
		mode = ModePlain
	}
	r.mode = mode
	if mode == ModeNone {
		return r
	}
	r.stop = make(chan struct{})
	r.done = make(chan struct{})
	tick, stopTicker := r.opts.tick, func() {}
	if tick == nil {
		t := time.NewTicker(r.opts.interval)
		tick, stopTicker = t.C, t.Stop
	}
	go r.run(tick, stopTicker)
	return r
}

// Mode returns the mode r writes in, with [ModeAuto] resolved to
// [ModeTTY] or [ModePlain].
func (r *Renderer) Mode() Mode { return r.mode }

// Func returns the callback that feeds r. It is safe to call from several
// goroutines at once, and it never blocks on output: it only records the
// event under a short mutex, and r's goroutine writes later. Events that
// arrive after [Renderer.Close] are ignored. Func never returns nil, even
// for [ModeNone].
func (r *Renderer) Func() Func {
	if r.mode == ModeNone {
		return func(Event) {}
	}
	return r.record
}

// Close writes the final state, stops r's goroutine and returns the first
// error that writing met. It waits for the writer to accept the last
// output. Calling Close again returns the same error.
func (r *Renderer) Close() error {
	r.closeOnce.Do(func() {
		r.mu.Lock()
		r.closed = true
		r.mu.Unlock()
		if r.stop != nil {
			close(r.stop)
			<-r.done
		}
	})
	return r.err
}

// record is the callback behind Func. It must stay cheap: no I/O, no
// clock, no allocation in the steady state.
func (r *Renderer) record(e Event) {
	key := e.Layer
	if key < 0 {
		key = -1
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return
	}
	if e.Phase == PhaseWarning {
		// No row: JSON lists each one, the other modes leave them to the final summary.
		if r.mode == ModeJSON && len(r.pending) < maxPending {
			r.pending = append(r.pending, e)
		}
		return
	}
	st := r.layers[key]
	fresh := st == nil
	if fresh {
		if len(r.layers) >= maxLayers {
			return
		}
		st = new(layerState)
		r.layers[key] = st
	}
	milestone := fresh || e.Complete || st.ev.Phase != e.Phase
	st.ev = e
	if e.Layers > r.nlayers && e.Layers <= maxLayers {
		r.nlayers = e.Layers
	}
	if key < 0 && e.Phase == PhaseResolve {
		r.resolve, r.hasResolve = e, true
	}
	r.dirty = true
	if r.mode == ModeTTY {
		return
	}
	if milestone && len(r.pending) < maxPending {
		r.pending = append(r.pending, e)
		st.dirty = false
	} else {
		st.dirty = true
	}
}

func (r *Renderer) run(tick <-chan time.Time, stopTicker func()) {
	defer close(r.done)
	defer stopTicker()
	for {
		select {
		case _, ok := <-tick:
			if !ok {
				tick = nil
				continue
			}
			r.flush(false)
			if r.opts.flushed != nil {
				r.opts.flushed <- struct{}{}
			}
		case <-r.stop:
			r.flush(true)
			return
		}
	}
}

// flush writes what changed since the last call; final ignores throttling.
func (r *Renderer) flush(final bool) {
	r.buf.Reset()
	if r.mode == ModeTTY {
		r.frame()
	} else {
		r.lines(final)
	}
	if r.buf.Len() == 0 || r.err != nil {
		return
	}
	if _, err := r.w.Write(r.buf.Bytes()); err != nil {
		r.err = fmt.Errorf("write progress: %w", err)
	}
}

// lines appends to r.buf the plain or JSON lines due now.
func (r *Renderer) lines(final bool) {
	every := plainEvery
	if r.mode == ModeJSON {
		every = jsonEvery
	}
	now := r.opts.now()
	evs := r.scratch[:0]

	r.mu.Lock()
	for _, e := range r.pending {
		evs = append(evs, e)
		r.lastEmit[max(e.Layer, -1)] = now
	}
	clear(r.pending)
	r.pending = r.pending[:0]
	var due []int
	for key, st := range r.layers {
		if !st.dirty {
			continue
		}
		last, ok := r.lastEmit[key]
		if final || !ok || now.Sub(last) >= every {
			due = append(due, key)
		}
	}
	slices.Sort(due)
	for _, key := range due {
		st := r.layers[key]
		evs = append(evs, st.ev)
		st.dirty = false
		r.lastEmit[key] = now
	}
	r.mu.Unlock()

	for _, e := range evs {
		if r.mode == ModeJSON {
			b, err := json.Marshal(e)
			if err != nil { // cannot happen: Event has only plain fields
				r.err = fmt.Errorf("encode progress event: %w", err)
				return
			}
			r.buf.Write(b)
		} else {
			r.buf.WriteString(printable(plainLine(e)))
		}
		r.buf.WriteByte('\n')
	}
	clear(evs)
	r.scratch = evs[:0]
}

// frame appends to r.buf a redraw of the TTY display, if anything changed.
func (r *Renderer) frame() {
	r.mu.Lock()
	if !r.dirty {
		r.mu.Unlock()
		return
	}
	r.dirty = false
	var lines []string
	if r.hasResolve {
		lines = append(lines, headerLine(r.resolve, r.nlayers))
	}
	// Layers the image is known to have get a row each, waiting or not;
	// any others that reported (the count came late, or lied) follow.
	for i := range r.nlayers {
		if st := r.layers[i]; st != nil {
			lines = append(lines, layerLine(st.ev))
		} else {
			lines = append(lines, waitingLine(i))
		}
	}
	var extra []int
	for key := range r.layers {
		if key >= r.nlayers {
			extra = append(extra, key)
		}
	}
	slices.Sort(extra)
	for _, key := range extra {
		lines = append(lines, layerLine(r.layers[key].ev))
	}
	if st := r.layers[-1]; st != nil && st.ev.Phase != PhaseResolve {
		lines = append(lines, footerLine(st.ev))
	}
	r.mu.Unlock()

	width := r.width()
	if r.drawn > 0 {
		fmt.Fprintf(&r.buf, "\x1b[%dA", r.drawn)
	}
	for _, l := range lines {
		r.buf.WriteString("\r\x1b[2K")
		r.buf.WriteString(truncate(l, width-1))
		r.buf.WriteByte('\n')
	}
	for i := len(lines); i < r.drawn; i++ {
		r.buf.WriteString("\r\x1b[2K\n")
	}
	r.drawn = max(r.drawn, len(lines))
}

// width returns the number of columns available to one TTY line.
func (r *Renderer) width() int {
	if r.opts.width > 0 {
		return r.opts.width
	}
	if r.fd >= 0 {
		if w, _, err := term.GetSize(r.fd); err == nil && w > 0 {
			return w
		}
	}
	return defaultWidth
}
