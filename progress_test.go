package img2ext4_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"testing"

	"github.com/img2ext4/img2ext4"
	"github.com/img2ext4/img2ext4/internal/tartest"
	"github.com/img2ext4/img2ext4/ocifetch"
	"github.com/img2ext4/img2ext4/progress"
)

// TestProgressSerialized checks the contract of WithProgress: the download workers and the
// applying goroutine report at the same time, but the callback is never entered twice at
// once. The callback keeps unlocked state, which the race detector (go test -race, as CI
// runs it) flags when calls are not ordered; the in-flight counter catches an overlap that
// happens even without it.
func TestProgressSerialized(t *testing.T) {
	// Several incompressible layers, so that later layers download while earlier ones apply.
	rng := rand.New(rand.NewPCG(1, 2))
	var layers [][]byte
	for i := range 6 {
		body := make([]byte, 256<<10)
		for j := range body {
			body[j] = byte(rng.Uint32())
		}
		layers = append(layers, tartest.Tar(tartest.File(fmt.Sprintf("f%d", i), string(body))))
	}
	ref := pushed(t, tartest.Image(layers...))

	var (
		inflight atomic.Int32
		overlaps atomic.Int32
		events   []progress.Event // unlocked on purpose
		phases   = map[progress.Phase]int{}
	)
	fn := func(ev progress.Event) {
		if inflight.Add(1) != 1 {
			overlaps.Add(1)
		}
		events = append(events, ev)
		phases[ev.Phase]++
		runtime.Gosched() // widen the window in which an overlap would show
		inflight.Add(-1)
	}
	for _, format := range []img2ext4.Format{img2ext4.FormatExt4, img2ext4.FormatDir, img2ext4.FormatTar} {
		t.Run(string(format), func(t *testing.T) {
			events, phases = nil, map[progress.Phase]int{}
			out := filepath.Join(t.TempDir(), "out")
			_, err := img2ext4.Convert(context.Background(), ref, out, img2ext4.WithFormat(format),
				img2ext4.WithFetchOptions(ocifetch.WithJobs(2)), img2ext4.WithProgress(fn))
			if err != nil {
				t.Fatal(err)
			}
			if n := overlaps.Load(); n > 0 {
				t.Errorf("the progress callback ran concurrently %d times", n)
			}
			for _, p := range []progress.Phase{progress.PhaseResolve, progress.PhaseDownload, progress.PhaseApply, progress.PhaseDone} {
				if phases[p] == 0 {
					t.Errorf("no %s event among %d", p, len(events))
				}
			}
			if last := events[len(events)-1]; last.Phase != progress.PhaseDone {
				t.Errorf("last event %+v, want phase done", last)
			}
		})
	}
}
