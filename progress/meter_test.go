package progress

import (
	"testing"
	"time"
)

func TestMeter(t *testing.T) {
	var events []Event
	m := NewMeter(func(ev Event) { events = append(events, ev) }, Event{Phase: PhaseApply, Layer: 2, Total: -1}, time.Now())
	for range 1000 {
		m.Add(3)
	}
	// A thousand adds well inside Interval: the first reports, then nothing until Complete.
	if len(events) != 1 || events[0].Done != 3 || events[0].Layer != 2 {
		t.Fatalf("events after a burst: %+v", events)
	}
	m.SetTotal(m.Done())
	m.Complete()
	last := events[len(events)-1]
	if !last.Complete || last.Done != 3000 || last.Total != 3000 || last.Phase != PhaseApply {
		t.Errorf("final event %+v", last)
	}
	// Without a callback a meter only counts.
	quiet := NewMeter(nil, Event{}, time.Now())
	quiet.Add(5)
	quiet.Complete()
	if quiet.Done() != 5 {
		t.Errorf("Done = %d, want 5", quiet.Done())
	}
}
