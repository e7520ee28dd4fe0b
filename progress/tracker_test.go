package progress

import (
	"sync"
	"testing"
	"time"
)

func TestTracker(t *testing.T) {
	clk := newFakeClock()
	tr := NewTracker(WithClock(clk.Now))
	f := tr.Func()
	if s := tr.Snapshot(); s.Phase != "" || s.Download.Percent != -1 || s.Download.ETA != -1 || s.Elapsed != 0 {
		t.Errorf("empty snapshot = %+v", s)
	}

	f(Event{Phase: PhaseResolve, Layer: -1, Total: -1})
	clk.Advance(time.Second)
	f(complete(Event{Phase: PhaseResolve, Layer: -1, Layers: 2, Total: -1}))
	f(Event{Phase: PhaseWarning, Layer: -1, Total: -1, Warning: &Warning{Path: "x", Action: "dropped"}}) // no stage
	s := tr.Snapshot()
	if s.Phase != PhaseResolve || s.Layers != 2 || s.Elapsed != time.Second || s.Download.Percent != 0 || s.Download.ETA != -1 {
		t.Errorf("after resolve: %+v", s)
	}

	// Layer 0 reports its size, layer 1 not yet: the total is partial, the percentage
	// goes by layers.
	f(dl(0, digest0, 0, 4*mib))
	clk.Advance(2 * time.Second)
	f(dl(0, digest0, mib, 4*mib))
	s = tr.Snapshot()
	want := PhaseTotals{Done: mib, Total: 4 * mib, Started: 1, BytesPerSec: mib / 2, Percent: 12.5, ETA: 14 * time.Second}
	if s.Phase != PhaseDownload || s.Download != want {
		t.Errorf("partial download:\n got %+v\nwant %+v", s.Download, want)
	}

	// Both sizes known: by bytes.
	f(dl(1, digest1, mib, 4*mib))
	s = tr.Snapshot()
	want = PhaseTotals{Done: 2 * mib, Total: 8 * mib, TotalKnown: true, Started: 2, BytesPerSec: mib, Percent: 25, ETA: 6 * time.Second}
	if s.Download != want {
		t.Errorf("download:\n got %+v\nwant %+v", s.Download, want)
	}

	// Layer 0 done downloading and applying with an unknown total; layer 1 done downloading.
	clk.Advance(2 * time.Second)
	f(complete(dl(0, digest0, 4*mib, 4*mib)))
	f(complete(dl(1, digest1, 4*mib, 4*mib)))
	f(ap(0, digest0, 0))
	clk.Advance(time.Second)
	f(ap(0, digest0, 3*mib))
	s = tr.Snapshot()
	want = PhaseTotals{Done: 8 * mib, Total: 8 * mib, TotalKnown: true, Started: 2, Completed: 2, BytesPerSec: 2 * mib, Percent: 100}
	if s.Download != want {
		t.Errorf("download done:\n got %+v\nwant %+v", s.Download, want)
	}
	wantAp := PhaseTotals{Done: 3 * mib, Started: 1, BytesPerSec: 3 * mib, Percent: 0, ETA: -1}
	if s.Apply != wantAp || s.Phase != PhaseApply {
		t.Errorf("apply of unknown size:\n got %#v\nwant %#v", s.Apply, wantAp)
	}

	f(complete(ap(0, digest0, 6*mib)))
	f(Event{Phase: PhaseApply, Layer: 1, Layers: 2, Digest: digest1, Done: mib, Total: 2 * mib})
	s = tr.Snapshot()
	// Both totals known now (a finished layer counts what it did): 7 of 8 MiB after one second.
	wantAp = PhaseTotals{Done: 7 * mib, Total: 8 * mib, TotalKnown: true, Started: 2, Completed: 1, BytesPerSec: 7 * mib, Percent: 87.5,
		ETA: 142857142}
	if s.Apply != wantAp {
		t.Errorf("apply:\n got %+v\nwant %+v", s.Apply, wantAp)
	}

	f(complete(Event{Phase: PhaseApply, Layer: 1, Layers: 2, Digest: digest1, Done: 2 * mib, Total: 2 * mib}))
	f(Event{Phase: PhaseFinalize, Layer: -1, Layers: 2, Total: -1})
	f(complete(Event{Phase: PhaseDone, Layer: -1, Layers: 2, Total: -1}))
	s = tr.Snapshot()
	if !s.Done || s.Phase != PhaseDone || s.Apply.Percent != 100 || s.Apply.ETA != 0 || s.Apply.Completed != 2 {
		t.Errorf("done: %+v", s)
	}
}

// TestTrackerConcurrent feeds a Tracker from several goroutines while another polls it;
// run it with -race. The final snapshot must count every byte.
func TestTrackerConcurrent(t *testing.T) {
	tr := NewTracker()
	f := tr.Func()
	const layers, steps = 8, 500
	stop := make(chan struct{})
	polled := make(chan int)
	go func() {
		n := 0
		for {
			select {
			case <-stop:
				polled <- n
				return
			default:
				s := tr.Snapshot()
				if s.Download.Percent > 100 || s.Apply.Percent > 100 {
					t.Errorf("percent above 100: %+v", s)
				}
				n++
			}
		}
	}()
	var wg sync.WaitGroup
	for l := range layers {
		wg.Go(func() {
			for i := range steps {
				f(Event{Phase: PhaseDownload, Layer: l, Layers: layers, Done: int64(i), Total: steps})
			}
			f(Event{Phase: PhaseDownload, Layer: l, Layers: layers, Done: steps, Total: steps, Complete: true})
			f(Event{Phase: PhaseApply, Layer: l, Layers: layers, Done: 2 * steps, Total: -1, Complete: true})
		})
	}
	wg.Wait()
	close(stop)
	if n := <-polled; n == 0 {
		t.Error("never polled")
	}
	s := tr.Snapshot()
	if s.Download.Done != layers*steps || s.Download.Completed != layers || !s.Download.TotalKnown || s.Download.Percent != 100 {
		t.Errorf("download = %+v", s.Download)
	}
	if s.Apply.Done != 2*layers*steps || s.Apply.Total != 2*layers*steps || s.Apply.Completed != layers || s.Apply.Percent != 100 {
		t.Errorf("apply = %+v", s.Apply)
	}
}

// TestTrackerLocal checks that layers read in place count as local, not as downloads: the
// download totals cover the other layers only, and are complete once those are.
func TestTrackerLocal(t *testing.T) {
	clk := newFakeClock()
	tr := NewTracker(WithClock(clk.Now))
	f := tr.Func()
	f(complete(Event{Phase: PhaseResolve, Layer: -1, Layers: 2, Total: -1}))
	f(local(0, digest0, 4*mib))
	s := tr.Snapshot()
	want := PhaseTotals{Percent: 0, ETA: -1}
	if s.Local != 1 || s.Phase != PhaseResolve || s.Download != want {
		t.Errorf("one local layer:\n got %+v\nwant Local 1, phase resolve, Download %+v", s, want)
	}
	f(dl(1, digest1, 0, 2*mib))
	clk.Advance(time.Second)
	f(complete(dl(1, digest1, 2*mib, 2*mib)))
	s = tr.Snapshot()
	want = PhaseTotals{Done: 2 * mib, Total: 2 * mib, TotalKnown: true, Started: 1, Completed: 1, BytesPerSec: 2 * mib, Percent: 100}
	if s.Local != 1 || s.Download != want {
		t.Errorf("local and downloaded layer:\n got Local %d, Download %+v\nwant Local 1, Download %+v", s.Local, s.Download, want)
	}

	tr = NewTracker(WithClock(clk.Now))
	f = tr.Func()
	f(complete(Event{Phase: PhaseResolve, Layer: -1, Layers: 2, Total: -1}))
	f(local(0, digest0, 4*mib))
	f(local(1, digest1, 2*mib))
	f(local(1, digest1, 2*mib)) // counted once
	s = tr.Snapshot()
	want = PhaseTotals{TotalKnown: true, Percent: 100}
	if s.Local != 2 || s.Download != want {
		t.Errorf("all layers local:\n got Local %d, Download %+v\nwant Local 2, Download %+v", s.Local, s.Download, want)
	}
}
