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
	ended      bool    // Finish or Fail was called
	summary    *Summary
	failure    error

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

// Finish records how the work ended, for [Renderer.Close] to write after the
// last progress: [ModeJSON] ends with one object of type "result" holding
// the fields of s; [ModeTTY] and [ModePlain] end with a line naming the
// output, digest, platform, layers and time, a line with the filesystem's
// size, use, available space and inodes when s.Filesystem is set, and a
// line for each warning. Only the first call to Finish or [Renderer.Fail]
// counts, and none after Close.
func (r *Renderer) Finish(s Summary) {
	r.end(&s, nil)
}

// Fail records that the work failed with err, for [Renderer.Close] to
// show: [ModeTTY] marks every layer that had not finished as failed (or
// cancelled, when err is [context.Canceled] or the layer had not started)
// and ends with a line saying so, so that no row is left waiting;
// [ModePlain] ends with such a line too; [ModeJSON] ends with one object of
// type "error" holding err's message. The error message itself is written
// only in ModeJSON: in the other modes, the caller prints it. Only the
// first call to [Renderer.Finish] or Fail counts, and none after Close; a
// nil err is ignored.
func (r *Renderer) Fail(err error) {
	if err != nil {
		r.end(nil, err)
	}
}

func (r *Renderer) end(s *Summary, err error) {
	if r.mode == ModeNone {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed || r.ended {
		return
	}
	r.ended, r.summary, r.failure = true, s, err
	r.dirty = true
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
	milestone := fresh || e.Complete || st.ev.Phase != e.Phase || e.Retries != st.ev.Retries
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
		r.frame(final)
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

	var summary *Summary
	var failure error
	var applied, total int
	if final {
		summary, failure = r.summary, r.failure
		applied, total = r.appliedLayers(), r.nlayers
	}
	r.mu.Unlock()

	for _, e := range evs {
		if r.mode == ModeJSON {
			typ := jsonTypeProgress
			if e.Phase == PhaseWarning {
				typ = jsonTypeWarning
			}
			r.writeJSON(jsonEvent{Type: typ, Event: e})
		} else {
			r.buf.WriteString(printable(plainLine(e)))
			r.buf.WriteByte('\n')
		}
	}
	clear(evs)
	r.scratch = evs[:0]
	switch {
	case r.mode == ModeJSON && summary != nil:
		r.writeJSON(jsonResult{Type: jsonTypeResult, Summary: *summary})
	case r.mode == ModeJSON && failure != nil:
		r.writeJSON(jsonError{Type: jsonTypeError, Error: failure.Error(), Cancelled: cancelled(failure)})
	case summary != nil:
		r.writeLines(lowerFirst(summaryLines(*summary)))
	case failure != nil:
		r.writeLines(lowerFirst([]string{failedLine(failure, applied, total)}))
	}
}

// lowerFirst lowers the first letter of each line, as [ModePlain] writes them.
func lowerFirst(lines []string) []string {
	for i, l := range lines {
		if l != "" && l[0] >= 'A' && l[0] <= 'Z' {
			lines[i] = string(l[0]+'a'-'A') + l[1:]
		}
	}
	return lines
}

// writeJSON appends v to r.buf as one line of JSON.
func (r *Renderer) writeJSON(v any) {
	b, err := json.Marshal(v)
	if err != nil { // cannot happen: the values have only plain fields
		r.err = fmt.Errorf("encode progress: %w", err)
		return
	}
	r.buf.Write(b)
	r.buf.WriteByte('\n')
}

// writeLines appends lines to r.buf, each made printable.
func (r *Renderer) writeLines(lines []string) {
	for _, l := range lines {
		r.buf.WriteString(printable(l))
		r.buf.WriteByte('\n')
	}
}

// appliedLayers returns the number of layers whose apply phase completed.
// r.mu must be held.
func (r *Renderer) appliedLayers() int {
	n := 0
	for key, st := range r.layers {
		if key >= 0 && st.ev.Phase == PhaseApply && st.ev.Complete {
			n++
		}
	}
	return n
}

// frame appends to r.buf a redraw of the TTY display, if anything changed,
// and on the final frame the lines of [Renderer.Finish].
func (r *Renderer) frame(final bool) {
	r.mu.Lock()
	if !r.dirty {
		r.mu.Unlock()
		return
	}
	r.dirty = false
	failure := r.failure
	var header []string
	if r.hasResolve {
		header = append(header, headerLine(r.resolve, r.nlayers, failure))
	}
	// Layers the image is known to have get a row each, waiting or not;
	// any others that reported (the count came late, or lied) follow.
	var rows []row
	for i := range r.nlayers {
		if st := r.layers[i]; st != nil {
			rows = append(rows, row{e: st.ev, started: true})
		} else {
			rows = append(rows, row{e: Event{Layer: i, Total: -1}, status: statusWaiting})
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
		rows = append(rows, row{e: r.layers[key].ev, started: true})
	}
	var footer []string
	st := r.layers[-1]
	switch {
	case failure != nil:
		footer = append(footer, failedLine(failure, r.appliedLayers(), len(rows)))
	case st != nil && st.ev.Phase != PhaseResolve:
		footer = append(footer, footerLine(st.ev))
	}
	var summary []string
	if final && r.summary != nil {
		summary = summaryLines(*r.summary)
	}
	r.mu.Unlock()

	if failure != nil {
		for i := range rows {
			rows[i].status = failedStatus(rows[i], failure)
		}
	}
	width := r.width()
	lines := header
	for _, rw := range rows {
		lines = append(lines, rw.line(width-1))
	}
	lines = append(lines, footer...)
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
	// The summary is written once, below the display, and never redrawn:
	// it keeps its whole length, wrapped by the terminal if need be.
	r.writeLines(summary)
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
