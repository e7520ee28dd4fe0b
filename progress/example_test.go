package progress_test

import (
	"fmt"
	"os"
	"time"

	"github.com/img2ext4/img2ext4/progress"
)

// Example shows plain output, as written to a log or a pipe: one line per
// phase start and completion. Lines in between are throttled, so only
// milestones are fed here to keep the output independent of timing.
func Example() {
	r := progress.NewRenderer(os.Stdout, progress.ModePlain)
	report := r.Func() // pass this to the library as its progress option

	const digest = "sha256:9d9f1ae2c3b4a5968778695a4b3c2d1e0f9e8d7c6b5a49382716059483726150"
	report(progress.Event{Phase: progress.PhaseResolve, Layer: -1, Total: -1})
	report(progress.Event{Phase: progress.PhaseResolve, Layer: -1, Layers: 1, Total: -1, Complete: true,
		Elapsed: 300 * time.Millisecond})
	report(progress.Event{Phase: progress.PhaseDownload, Layers: 1, Digest: digest, Total: 3 << 20})
	report(progress.Event{Phase: progress.PhaseDownload, Layers: 1, Digest: digest, Done: 3 << 20, Total: 3 << 20,
		Complete: true, Elapsed: 1500 * time.Millisecond, BytesPerSec: 2 << 20})
	report(progress.Event{Phase: progress.PhaseApply, Layers: 1, Digest: digest, Total: -1})
	report(progress.Event{Phase: progress.PhaseApply, Layers: 1, Digest: digest, Done: 7 << 20, Total: -1,
		Complete: true, Elapsed: 500 * time.Millisecond})
	report(progress.Event{Phase: progress.PhaseDone, Layer: -1, Layers: 1, Total: -1, Complete: true, Elapsed: 2 * time.Second})

	if err := r.Close(); err != nil {
		fmt.Fprintln(os.Stderr, err)
	}
	// Output:
	// resolving
	// resolved 1 layer in 0.3s
	// [1/1] 9d9f1ae2c3b4 downloading 0 B / 3.0 MiB (0%)
	// [1/1] 9d9f1ae2c3b4 downloaded 3.0 MiB in 1.5s (2.0 MiB/s)
	// [1/1] 9d9f1ae2c3b4 applying 0 B
	// [1/1] 9d9f1ae2c3b4 applied 7.0 MiB in 0.5s
	// done in 2.0s
}

// ExampleTracker shows a Tracker that a user interface polls, fed alongside a Renderer
// through one callback.
func ExampleTracker() {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now } // a fixed clock, to keep the output stable
	tr := progress.NewTracker(progress.WithClock(clock))
	r := progress.NewRenderer(nil, progress.ModeNone) // or os.Stderr, progress.ModeAuto
	show, track := r.Func(), tr.Func()
	report := func(e progress.Event) { show(e); track(e) } // pass this to the library

	report(progress.Event{Phase: progress.PhaseResolve, Layer: -1, Layers: 2, Total: -1, Complete: true})
	report(progress.Event{Phase: progress.PhaseDownload, Layer: 0, Layers: 2, Total: 3 << 20})
	report(progress.Event{Phase: progress.PhaseDownload, Layer: 1, Layers: 2, Total: 1 << 20})
	now = now.Add(2 * time.Second)
	report(progress.Event{Phase: progress.PhaseDownload, Layer: 0, Layers: 2, Done: 2 << 20, Total: 3 << 20})
	report(progress.Event{Phase: progress.PhaseDownload, Layer: 1, Layers: 2, Done: 1 << 20, Total: 1 << 20, Complete: true})

	s := tr.Snapshot()
	d := s.Download
	fmt.Printf("%s: %s of %s (%.0f%%), %d of %d layers, %s, %s left\n", s.Phase,
		progress.HumanBytes(d.Done), progress.HumanBytes(d.Total), d.Percent, d.Completed, s.Layers,
		progress.HumanBytes(int64(d.BytesPerSec))+"/s", d.ETA)
	r.Close()
	// Output:
	// download: 3.0 MiB of 4.0 MiB (75%), 1 of 2 layers, 1.5 MiB/s, 666.666666ms left
}
