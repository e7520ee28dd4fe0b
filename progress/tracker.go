package progress

import (
	"sync"
	"time"
)

// Tracker folds the events of one conversion into totals that a user interface can poll
// with [Tracker.Snapshot]: bytes done and expected for each phase, layers completed,
// speed, percentage and estimated time left. Feed it through [Tracker.Func]. A Tracker is
// safe for concurrent use: the callback and Snapshot may run on any goroutines at once.
// Like a [Renderer], its callback only records the event under a short mutex; it does
// no I/O and never blocks on a reader.
//
// To show progress and keep a snapshot both, call both callbacks from one Func.
type Tracker struct {
	now func() time.Time

	mu      sync.Mutex
	layers  map[int]*trackedLayer
	nlayers int
	nlocal  int   // layers that reported PhaseLocal: they have no download
	phase   Phase // latest image-level phase
	done    bool
	first   time.Time           // first event
	started map[Phase]time.Time // first event of each layer phase
	latest  map[Phase]time.Time // latest event of each layer phase
}

type trackedLayer struct {
	download, apply Event
	seenDL, seenAp  bool
	local           bool // the blob needed no download (PhaseLocal)
}

// NewTracker returns an empty Tracker. Of the options, only [WithClock] applies: it sets
// the clock that measures speed and time left. The default is [time.Now].
func NewTracker(opts ...Option) *Tracker {
	o := makeOptions(opts)
	return &Tracker{now: o.now, layers: make(map[int]*trackedLayer), started: make(map[Phase]time.Time), latest: make(map[Phase]time.Time)}
}

// Func returns the callback that feeds t. It is safe to call from several goroutines at
// once and returns at once. Events for more than a few thousand distinct layers are
// dropped.
func (t *Tracker) Func() Func { return t.record }

func (t *Tracker) record(e Event) {
	if e.Phase == PhaseWarning {
		return // no stage: nothing to count
	}
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.first.IsZero() {
		t.first = now
	}
	if e.Layers > t.nlayers && e.Layers <= maxLayers {
		t.nlayers = e.Layers
	}
	if e.Layer < 0 {
		t.phase = e.Phase
		t.done = t.done || (e.Phase == PhaseDone && e.Complete)
		return
	}
	if e.Phase != PhaseDownload && e.Phase != PhaseApply && e.Phase != PhaseLocal {
		return
	}
	l := t.layers[e.Layer]
	if l == nil {
		if len(t.layers) >= maxLayers {
			return
		}
		l = new(trackedLayer)
		t.layers[e.Layer] = l
	}
	if e.Phase == PhaseLocal {
		if !l.local {
			l.local = true
			t.nlocal++
		}
		return
	}
	if _, ok := t.started[e.Phase]; !ok {
		t.started[e.Phase] = now
	}
	t.latest[e.Phase] = now
	if e.Phase == PhaseDownload {
		l.download, l.seenDL = e, true
	} else {
		l.apply, l.seenAp = e, true
	}
	// The phase only moves forward: downloads go on while the first layers apply.
	if t.phase == "" || t.phase == PhaseResolve || (t.phase == PhaseDownload && e.Phase == PhaseApply) {
		t.phase = e.Phase
	}
}

// Snapshot is the state of a conversion at one moment, as [Tracker.Snapshot] returns it.
// It is a value: a caller may keep it.
type Snapshot struct {
	// Phase is the furthest stage the conversion reached: [PhaseResolve], then
	// [PhaseDownload] once a layer downloads, [PhaseApply] once one applies (downloads may
	// go on), then [PhaseFinalize] and [PhaseDone]. It is empty before the first event.
	Phase Phase `json:"phase"`
	// Layers is the number of layers in the image, or 0 while not yet known.
	Layers int `json:"layers"`
	// Download sums the download phase of every layer that has one, in compressed bytes:
	// all but the Local ones.
	Download PhaseTotals `json:"download"`
	// Local is the number of layers whose blob needed no download ([PhaseLocal]).
	Local int `json:"local"`
	// Apply sums the apply phase of every layer, in uncompressed bytes.
	Apply PhaseTotals `json:"apply"`
	// Done is true once the conversion reported its end ([PhaseDone], complete).
	Done bool `json:"done"`
	// Elapsed is the time since the first event.
	Elapsed time.Duration `json:"elapsed_ns"`
}

// PhaseTotals sums one phase over the layers of an image.
type PhaseTotals struct {
	// Done is the number of bytes processed so far, over all layers.
	Done int64 `json:"done"`
	// Total is the sum of the totals the layers reported so far; TotalKnown says whether
	// every layer of the image reported one, making Total the whole phase's.
	Total int64 `json:"total"`
	// TotalKnown is true when every layer's total is known.
	TotalKnown bool `json:"total_known"`
	// Started is the number of layers that began this phase.
	Started int `json:"started"`
	// Completed is the number of layers that finished this phase.
	Completed int `json:"completed"`
	// BytesPerSec is Done divided by the time since the phase's first event, or, once
	// every layer completed the phase, by the time the phase took.
	BytesPerSec float64 `json:"bytes_per_sec"`
	// Percent is how much of the phase is done, 0 to 100: by bytes when TotalKnown,
	// else by layers, counting each started layer of known total by its share of bytes.
	// It is -1 while the number of layers is unknown.
	Percent float64 `json:"percent"`
	// ETA is the time the phase should still take at the speed it had so far, from
	// Percent; -1 when it cannot be told yet (nothing done, or Percent unknown).
	ETA time.Duration `json:"eta_ns"`
}

// Snapshot returns the totals of every event recorded so far.
func (t *Tracker) Snapshot() Snapshot {
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	s := Snapshot{Phase: t.phase, Layers: t.nlayers, Done: t.done}
	if !t.first.IsZero() {
		s.Elapsed = now.Sub(t.first)
	}
	s.Download = t.totals(PhaseDownload, now)
	s.Local = t.nlocal
	s.Apply = t.totals(PhaseApply, now)
	return s
}

// totals sums phase p over the layers; t.mu must be held.
func (t *Tracker) totals(p Phase, now time.Time) PhaseTotals {
	pt := PhaseTotals{Percent: -1, ETA: -1}
	n := t.nlayers // layers that go through p
	if p == PhaseDownload {
		n -= t.nlocal
	}
	known := 0
	var share float64 // layers' worth of work done, for Percent by layers
	for _, l := range t.layers {
		e, seen := l.download, l.seenDL
		if p == PhaseApply {
			e, seen = l.apply, l.seenAp
		}
		if !seen {
			continue
		}
		pt.Started++
		pt.Done += e.Done
		switch {
		case e.Complete:
			pt.Completed++
			share++
		case e.Total > 0:
			share += min(float64(e.Done)/float64(e.Total), 1)
		}
		if e.Total >= 0 {
			pt.Total += e.Total
			known++
		} else if e.Complete {
			pt.Total += e.Done // a finished layer's total is what it did
			known++
		}
	}
	pt.TotalKnown = t.nlayers > 0 && known >= n
	switch {
	case pt.TotalKnown && pt.Total > 0:
		pt.Percent = min(float64(pt.Done)/float64(pt.Total)*100, 100)
	case pt.TotalKnown: // every layer is empty, or none goes through p
		pt.Percent = 100
	case t.nlayers > 0:
		pt.Percent = min(share/float64(n)*100, 100)
	}
	start, ok := t.started[p]
	if !ok {
		if pt.Percent >= 100 { // no layer goes through p
			pt.ETA = 0
		}
		return pt
	}
	el := now.Sub(start)
	if t.nlayers > 0 && pt.Completed >= n {
		el = t.latest[p].Sub(start) // the phase is over: its speed stays what it was
	}
	if s := el.Seconds(); s > 0 {
		pt.BytesPerSec = float64(pt.Done) / s
	}
	if pt.Percent >= 100 {
		pt.ETA = 0
	} else if pt.Percent > 0 && el > 0 {
		pt.ETA = time.Duration(float64(el) * (100 - pt.Percent) / pt.Percent)
	}
	return pt
}
