package layerstream_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/img2ext4/img2ext4/layerstream"
	"github.com/klauspost/compress/gzip"
)

// TestPipelineBudgets reads an image of several multi-MiB layers through pipelines with
// every kind of budget: every layer must come out whole and verified, in order, and the
// memory held must stay within the budget plus the read layer's own backlog.
func TestPipelineBudgets(t *testing.T) {
	rnd := rand.New(rand.NewPCG(1, 2))
	var plains [][]byte
	var layers []v1.Layer
	var diffIDs []v1.Hash
	for i := range 6 {
		b := make([]byte, (i+1)*400_000)
		for j := 0; j < len(b); j += 4096 {
			b[j] = byte(rnd.Uint32()) // compressible, but every chunk different
		}
		plains = append(plains, b)
		blob := gz(b)
		if i%2 == 1 {
			blob = zst(b)
		}
		layers = append(layers, static.NewLayer(blob, types.OCILayer))
		diffIDs = append(diffIDs, hashOf(b))
	}
	const headBacklog = 8 << 20 // layerstream's, for the bound below
	for _, tc := range []struct {
		jobs         int
		memory, disk int64
	}{
		{1, 0, 0},
		{2, 0, 0},
		{3, 2 << 20, 0},
		{3, 0, 1 << 30},
		{6, 1 << 20, 3 << 20},
		{8, 64 << 20, -1},
	} {
		t.Run(fmt.Sprintf("jobs=%d,mem=%d,disk=%d", tc.jobs, tc.memory, tc.disk), func(t *testing.T) {
			tmp := t.TempDir()
			opts := []layerstream.Option{layerstream.WithJobs(tc.jobs), layerstream.WithMemory(tc.memory), layerstream.WithTempDir(tmp)}
			if tc.disk >= 0 {
				opts = append(opts, layerstream.WithDisk(tc.disk))
			}
			p, err := layerstream.NewPipeline(context.Background(), layers, diffIDs, opts...)
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			for i := range layers {
				st, err := p.Open(context.Background(), i)
				if err != nil {
					t.Fatal(err)
				}
				got, err := io.ReadAll(st)
				if err != nil || !bytes.Equal(got, plains[i]) {
					t.Fatalf("layer %d: read %d bytes, %v; want %d", i, len(got), err, len(plains[i]))
				}
				if err := st.Close(); err != nil {
					t.Fatal(err)
				}
			}
			if _, peak := layerstream.WaitDecoded(p, len(layers)-1); peak > tc.memory+headBacklog+1<<20 {
				t.Errorf("held %d bytes in memory, budget %d", peak, tc.memory)
			}
			p.Close()
			if left, _ := os.ReadDir(tmp); len(left) != 0 {
				t.Errorf("files left in the temporary directory: %v", left)
			}
			if n := layerstream.Mapped(p); n != 0 {
				t.Errorf("%d chunks still mapped after Close", n)
			}
		})
	}
	if _, err := layerstream.NewPipeline(context.Background(), layers, diffIDs[1:]); err == nil {
		t.Error("a diff_id short: no error")
	}
	for _, o := range []layerstream.Option{layerstream.WithJobs(0), layerstream.WithJobs(65), layerstream.WithMemory(-1), layerstream.WithDisk(-1)} {
		if _, err := layerstream.NewPipeline(context.Background(), layers, diffIDs, o); err == nil {
			t.Error("an option out of range: no error")
		}
	}
}

// TestPipelineError: a layer that fails its DiffID fails only its own stream, after its
// bytes; the layers before it read fine, and closing early does not hang.
func TestPipelineError(t *testing.T) {
	a, b := bytes.Repeat([]byte("a"), 3<<20), bytes.Repeat([]byte("b"), 3<<20)
	layers := []v1.Layer{static.NewLayer(gz(a), types.OCILayer), static.NewLayer(gz(b), types.OCILayer), static.NewLayer(gz(a), types.OCILayer)}
	diffIDs := []v1.Hash{hashOf(a), hashOf(a), hashOf(a)}
	p, err := layerstream.NewPipeline(context.Background(), layers, diffIDs, layerstream.WithJobs(3), layerstream.WithMemory(0), layerstream.WithTempDir(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	st, _ := p.Open(context.Background(), 0)
	if n, err := io.Copy(io.Discard, st); err != nil || n != int64(len(a)) {
		t.Fatalf("layer 0: %d bytes, %v", n, err)
	}
	st.Close()
	st, _ = p.Open(context.Background(), 1)
	n, err := io.Copy(io.Discard, st)
	if !errors.Is(err, layerstream.ErrDiffIDMismatch) || n != int64(len(b)) {
		t.Fatalf("layer 1: %d bytes, %v; want all %d, then a DiffID mismatch", n, err, len(b))
	}
	st.Close()
	// Layer 2 is left unread: Close must stop its decoder.
}

// sizedLayers returns gzip layers of random bytes stored uncompressed (so that their
// compressed sizes keep the order of the uncompressed ones, and they are quick to make and
// decode) of the given sizes in MiB (in eighths), with their contents and DiffIDs.
func sizedLayers(eighths ...int) (plains [][]byte, layers []v1.Layer, diffIDs []v1.Hash) {
	rnd := rand.NewChaCha8([32]byte{3, 4})
	for _, n := range eighths {
		b := make([]byte, n<<17)
		rnd.Read(b)
		plains = append(plains, b)
		var blob bytes.Buffer
		w, _ := gzip.NewWriterLevel(&blob, gzip.NoCompression)
		w.Write(b)
		w.Close()
		layers = append(layers, static.NewLayer(blob.Bytes(), types.OCILayer))
		diffIDs = append(diffIDs, hashOf(b))
	}
	return plains, layers, diffIDs
}

// gatedLayer is a layer whose blob is not there until open is closed, as one still
// waiting for its download.
type gatedLayer struct {
	v1.Layer
	open chan struct{}
}

func (l gatedLayer) Compressed() (io.ReadCloser, error) {
	<-l.open
	return l.Layer.Compressed()
}

// readAll reads every layer of p in order and compares it with plains.
func readAll(t *testing.T, ctx context.Context, p *layerstream.Pipeline, plains [][]byte) {
	t.Helper()
	buf := make([]byte, 256<<10)
	for i, want := range plains {
		st, err := p.Open(ctx, i)
		if err != nil {
			t.Fatal(err)
		}
		var n int
		for err == nil {
			var m int
			m, err = io.ReadFull(st, buf)
			if n+m > len(want) || !bytes.Equal(buf[:m], want[n:n+m]) {
				t.Fatalf("layer %d: bytes %d to %d differ", i, n, n+m)
			}
			n += m
		}
		st.Close()
		if ctx.Err() != nil {
			t.Fatalf("layer %d: no bytes for 2 minutes after %d: deadlock", i, n)
		}
		if err != io.ErrUnexpectedEOF && err != io.EOF || n != len(want) {
			t.Fatalf("layer %d: read %d bytes, %v; want %d", i, n, err, len(want))
		}
	}
}

// TestPipelineLargestEarly: with two jobs, the largest layer starts decoding beside the
// first instead of after the small ones below it, and goes to its spool file rather than
// taking the memory the layers read next need. Layer 0's blob is held back until the
// second layer has started, so the decoder that takes layers in order cannot race on.
func TestPipelineLargestEarly(t *testing.T) {
	plains, layers, diffIDs := sizedLayers(4, 1, 2, 1, 24, 1)
	const big = 4
	for _, memory := range []int64{0, 64 << 20} {
		gate := make(chan struct{})
		gated := append([]v1.Layer{gatedLayer{layers[0], gate}}, layers[1:]...)
		p, err := layerstream.NewPipeline(context.Background(), gated, diffIDs,
			layerstream.WithJobs(2), layerstream.WithMemory(memory), layerstream.WithDisk(1<<30), layerstream.WithTempDir(t.TempDir()))
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		if order := layerstream.Started(p, 2); len(order) < 2 || min(order[0], order[1]) != 0 || max(order[0], order[1]) != big {
			t.Errorf("layers started first: %v; want 0 and the largest, %d", order[:2], big)
		}
		close(gate)
		if memory > 0 {
			// The layers after the one being read wait in memory; the largest, read
			// last, in its spool file.
			if spooled, _ := layerstream.WaitDecoded(p, big); spooled != int64(len(plains[big])) {
				t.Errorf("largest layer: %d bytes spooled of %d", spooled, len(plains[big]))
			}
			if spooled, _ := layerstream.WaitDecoded(p, 1); spooled != 0 {
				t.Errorf("layer 1: %d bytes spooled with memory to spare", spooled)
			}
		}
		readAll(t, context.Background(), p, plains)
		if order := layerstream.Started(p, len(layers)); len(order) != len(layers) {
			t.Errorf("decoding order %v: not every layer once", order)
		}
	}
}

// TestPipelineOrderBudgets reads layers of different sizes through pipelines with 1 to 4
// jobs and budgets none, tight or ample, in memory and on disk: every layer must come out
// whole and verified. A pipeline whose reader waits for a layer no decoder will take (all
// of them on layers out of order, waiting for budget) hangs: the test then fails after a
// bound far above its run time.
func TestPipelineOrderBudgets(t *testing.T) {
	plains, layers, diffIDs := sizedLayers(2, 6, 1, 9, 3, 11)
	for jobs := 1; jobs <= 4; jobs++ {
		for _, b := range []struct{ memory, disk int64 }{{0, 0}, {1 << 20, 0}, {0, 2 << 20}, {1 << 20, 2 << 20}, {64 << 20, 1 << 30}} {
			t.Run(fmt.Sprintf("jobs=%d,mem=%d,disk=%d", jobs, b.memory, b.disk), func(t *testing.T) {
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				hung := time.AfterFunc(2*time.Minute, cancel)
				defer hung.Stop()
				p, err := layerstream.NewPipeline(ctx, layers, diffIDs, layerstream.WithJobs(jobs),
					layerstream.WithMemory(b.memory), layerstream.WithDisk(b.disk), layerstream.WithTempDir(t.TempDir()))
				if err != nil {
					t.Fatal(err)
				}
				defer p.Close()
				readAll(t, ctx, p, plains)
			})
		}
	}
}

// TestPipelineSpoolRefused: when the temporary directory refuses the spool files, the
// layers decoded ahead wait in memory instead, and every layer still comes out whole.
func TestPipelineSpoolRefused(t *testing.T) {
	plains, layers, diffIDs := sizedLayers(2, 6, 1, 9, 3, 11)
	missing := filepath.Join(t.TempDir(), "missing")
	for jobs := 1; jobs <= 3; jobs++ {
		t.Run(fmt.Sprintf("jobs=%d", jobs), func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			hung := time.AfterFunc(2*time.Minute, cancel)
			defer hung.Stop()
			p, err := layerstream.NewPipeline(ctx, layers, diffIDs, layerstream.WithJobs(jobs),
				layerstream.WithMemory(1<<20), layerstream.WithDisk(1<<30), layerstream.WithTempDir(missing))
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			readAll(t, ctx, p, plains)
		})
	}
}

// TestPipelineCloseWaitingBlob: closing a Pipeline does not wait for a layer taken out of
// order whose blob has not started downloading (its Compressed still waiting).
func TestPipelineCloseWaitingBlob(t *testing.T) {
	plains, layers, diffIDs := sizedLayers(1, 1, 8)
	gate, first := make(chan struct{}), make(chan struct{})
	defer close(gate)
	layers[2] = gatedLayer{layers[2], gate}
	// Layer 0's blob is held until two layers have started, so that its decoder does not
	// finish it and take layer 1 before the other decoder takes the largest.
	layers[0] = gatedLayer{layers[0], first}
	p, err := layerstream.NewPipeline(context.Background(), layers, diffIDs,
		layerstream.WithJobs(2), layerstream.WithMemory(64<<20), layerstream.WithTempDir(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	order := layerstream.Started(p, 2)
	close(first)
	if len(order) < 2 || order[1] != 2 {
		t.Fatalf("layers started first: %v; want 0 and the largest, 2", order)
	}
	readAll(t, context.Background(), p, plains[:1])
	closed := make(chan struct{})
	go func() { p.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(time.Minute): // a bound on a hang, not a timing check
		t.Fatal("Close still waiting after a minute for a layer whose blob never came")
	}
}

// TestPipelineFarHalf: a layer taken out of order holds at most half the memory budget,
// even with no disk to spool to, so that the layers read next keep the other half. Layer
// 0's blob is held back until the largest layer has started, so that it is taken out of
// order; the decoders then settle with nothing read, the largest layer waiting for the
// reader at half the budget (without the cap it would hold all its 6 MiB).
func TestPipelineFarHalf(t *testing.T) {
	plains, layers, diffIDs := sizedLayers(8, 8, 48)
	const memory, big = 8 << 20, 2
	gate := make(chan struct{})
	layers[0] = gatedLayer{layers[0], gate}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	hung := time.AfterFunc(2*time.Minute, cancel)
	defer hung.Stop()
	p, err := layerstream.NewPipeline(ctx, layers, diffIDs,
		layerstream.WithJobs(2), layerstream.WithMemory(memory), layerstream.WithDisk(0), layerstream.WithTempDir(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	order := layerstream.Started(p, 2)
	close(gate)
	if len(order) < 2 || order[1] != big {
		t.Fatalf("layers started first: %v; want 0 and the largest, %d", order, big)
	}
	if far := layerstream.Settled(p, len(layers)); far > memory/2 {
		t.Errorf("the layer taken out of order holds %d bytes in memory, more than half the budget (%d)", far, memory)
	} else if far == 0 {
		t.Errorf("the layer taken out of order holds nothing in memory; want up to half the budget")
	}
	readAll(t, ctx, p, plains)
}
