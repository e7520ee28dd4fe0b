package progress

import "time"

// Interval is the shortest time between two intermediate events of one [Meter].
const Interval = 100 * time.Millisecond

// Meter counts the bytes of one phase of one layer and reports them to a [Func]: at most
// one intermediate event every [Interval], then one final event with Complete set. It is
// the one place where byte-counting stages throttle their reports. A Meter is not safe for
// concurrent use: the goroutine doing the work makes every call, and fn is called from it.
type Meter struct {
	fn    Func
	ev    Event
	start time.Time
	last  time.Time
}

// NewMeter returns a Meter that reports ev to fn, with Done, Elapsed (since start) and
// BytesPerSec filled in. A nil fn gives a Meter that only counts.
func NewMeter(fn Func, ev Event, start time.Time) *Meter {
	return &Meter{fn: fn, ev: ev, start: start}
}

// Add counts n more bytes and reports them when the last report is older than [Interval]
// (the first call always reports).
func (m *Meter) Add(n int) {
	m.ev.Done += int64(n)
	if m.fn == nil {
		return
	}
	if now := time.Now(); now.Sub(m.last) >= Interval {
		m.last = now
		m.fn(m.event(now))
	}
}

// Done returns the bytes counted so far.
func (m *Meter) Done() int64 { return m.ev.Done }

// SetTotal sets the Total of the events that follow.
func (m *Meter) SetTotal(total int64) { m.ev.Total = total }

// Retry counts a retry of this phase, made because of reason, and reports it at once in
// the Retries and Retry fields of an event.
func (m *Meter) Retry(reason string) {
	m.ev.Retries++
	m.ev.Retry = reason
	if m.fn == nil {
		return
	}
	now := time.Now()
	m.last = now
	m.fn(m.event(now))
}

// Complete reports the final event, with Complete set.
func (m *Meter) Complete() {
	if m.fn == nil {
		return
	}
	ev := m.event(time.Now())
	ev.Complete = true
	m.fn(ev)
}

func (m *Meter) event(now time.Time) Event {
	ev := m.ev
	ev.Elapsed = now.Sub(m.start)
	if s := ev.Elapsed.Seconds(); s > 0 {
		ev.BytesPerSec = float64(ev.Done) / s
	}
	return ev
}
