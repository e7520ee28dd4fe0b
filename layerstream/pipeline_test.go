package layerstream_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/img2ext4/img2ext4/layerstream"
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
