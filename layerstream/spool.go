package layerstream

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/img2ext4/img2ext4/progress"
)

// Spool decompresses one layer ahead of its reader into an unlinked temporary file,
// verifying its DiffID on the way, so that decompressing the next layer runs on one core
// while the current one is applied on another. The file holds one uncompressed layer and
// disappears when the Spool is closed, however the process ends.
type Spool struct {
	done   chan struct{}
	cancel context.CancelFunc
	f      *os.File
	size   int64
	err    error
	layer  string
}

// StartSpool begins decompressing l, which must hash to diffID, into a new Spool in the
// directory of [WithTempDir]. [WithLimit] caps its size; [WithProgress] and [WithDecoder]
// are ignored. The caller closes the Spool.
func StartSpool(ctx context.Context, l v1.Layer, diffID v1.Hash, opts ...Option) *Spool {
	ctx, cancel := context.WithCancel(ctx)
	s := &Spool{done: make(chan struct{}), cancel: cancel, layer: layerName(l)}
	o, err := makeOptions(opts)
	if err != nil {
		s.err = err
		close(s.done)
		return s
	}
	go func() {
		defer close(s.done)
		s.err = s.fill(ctx, l, diffID, o)
		if s.err != nil && s.f != nil {
			s.f.Close()
			s.f = nil
		}
	}()
	return s
}

func (s *Spool) fill(ctx context.Context, l v1.Layer, diffID v1.Hash, o *options) (err error) {
	f, err := os.CreateTemp(o.tmpDir, "img2ext4-layer-*")
	if err != nil {
		return fmt.Errorf("spool layer %s: %w", s.layer, err)
	}
	s.f = f
	if err := os.Remove(f.Name()); err != nil {
		return fmt.Errorf("spool layer %s: %w", s.layer, err)
	}
	st, err := Open(ctx, l, diffID, WithReadAhead(0), WithLimit(o.limit, o.used))
	if err != nil {
		return err
	}
	defer func() {
		if cerr := st.Close(); cerr != nil && err == nil {
			err = cerr
		}
	}()
	bw := bufio.NewWriterSize(f, 1<<20)
	n, err := io.Copy(bw, st)
	var de *DiffIDError
	if errors.As(err, &de) {
		return err
	} else if err != nil {
		return fmt.Errorf("layer %s: %w", s.layer, err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("spool layer %s: %w", s.layer, err)
	}
	s.size = n
	return nil
}

// Open waits until the layer is spooled and verified, then returns its uncompressed
// stream, which is valid until the Spool is closed. [WithProgress] reports it, with the
// uncompressed size as Total from the start; [WithLimit] applies to it as to a stream of
// its own. Open fails with the spool's error, or with ctx's when ctx is done first.
func (s *Spool) Open(ctx context.Context, opts ...Option) (*Stream, error) {
	o, err := makeOptions(opts)
	if err != nil {
		return nil, err
	}
	select {
	case <-s.done:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if s.err != nil {
		return nil, s.err
	}
	if o.used+s.size > o.limit {
		return nil, &LimitError{What: "uncompressed bytes", Limit: o.limit}
	}
	ev := o.event
	ev.Total = s.size
	return &Stream{
		r:     bufio.NewReaderSize(ContextReader(ctx, io.NewSectionReader(s.f, 0, s.size)), 1<<20),
		layer: s.layer,
		meter: progress.NewMeter(o.progress, ev, time.Now()),
	}, nil
}

// Close stops the spooling if it still runs, waits for it, and removes the file.
func (s *Spool) Close() {
	s.cancel()
	<-s.done
	if s.f != nil {
		s.f.Close()
		s.f = nil
	}
}
