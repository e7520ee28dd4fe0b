package ocifetch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/sync/errgroup"

	"github.com/img2ext4/img2ext4/layerstream"
	"github.com/img2ext4/img2ext4/progress"
)

// Prefetcher downloads the layer blobs of an image in parallel to temporary
// files or a [BlobCache], and lets each layer be read while its blob
// downloads. Create one with [Prefetch], take its layers with
// [Prefetcher.Layers] and apply them in order, then call [Prefetcher.Close].
// Its methods are safe for concurrent use.
type Prefetcher struct {
	ctx    context.Context
	cancel context.CancelFunc
	dir    string // temporary directory, or "" when none is needed
	cache  *BlobCache
	layers []*prefetchLayer
	done   chan struct{} // closed when all downloads have ended

	// The downloads run in g under gctx, which ends when one fails for good. Each layer
	// is claimed once, under mu: by the loop of [Prefetch], in layer order and at most
	// jobs at a time, or at once by a reader waiting for it (see [prefetchLayer.demand]).
	// A download is added to g under mu as it is claimed, so that once the loop finds
	// every layer claimed, g.Wait waits for all of them.
	g       *errgroup.Group
	gctx    context.Context
	rep     *reporter
	mu      sync.Mutex
	jobs    int           // the WithJobs limit
	running int           // downloads that count against jobs; guarded by mu
	freed   chan struct{} // signalled (without blocking) when running drops

	closed    atomic.Bool
	closeOnce sync.Once
	rmErr     error
}

// Prefetch starts downloading every layer blob of img, at most [WithJobs] at
// a time and in layer order, into a new temporary directory under
// [WithTempDir], or into the [BlobCache] of [WithBlobCache], where blobs
// already held are verified instead of downloaded. A layer whose Compressed
// method is called before its download started starts at once, beyond that
// limit if every slot is taken: a reader that takes the layers out of order
// (as a [layerstream.Pipeline] does) never waits for a download slot. Each blob is checked
// against its layer's digest and size as it is written, and can be read
// while it downloads (see [Prefetcher.Layers]). Download progress
// goes to [WithProgress]; a blob found in the cache reports one Complete
// event. Layers of local sources ("oci:", "oci-archive:", "docker-archive:")
// are not copied: their Compressed method reads the blob in place and
// verifies it while it is read, and each reports one [progress.PhaseLocal]
// event instead of a download. Prefetch returns
// as soon as the downloads have started; ctx bounds them and the waits in the
// layers' Compressed methods. A registry download failing for a transient
// reason (a temporary status, a network error, a truncated stream, or two
// minutes without data) is retried, and resumed from the bytes already
// received, within the budget of [WithRetries] and [WithRetryMaxTime];
// one failing for good (digest or size mismatch, missing blob, refused
// credentials) cancels the others.
// The caller must call [Prefetcher.Close].
//
// Layers of images from [Image] are downloaded under ctx; other layers are
// read through their Compressed method.
func Prefetch(ctx context.Context, img v1.Image, opts ...Option) (*Prefetcher, error) {
	o, err := makeOptions(opts)
	if err != nil {
		return nil, err
	}
	layers, err := img.Layers()
	if err != nil {
		return nil, fmt.Errorf("prefetch: list layers: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	p := &Prefetcher{
		ctx:    ctx,
		cancel: cancel,
		done:   make(chan struct{}),
	}
	rep := &reporter{fn: o.progress}
	download := false
	for i, l := range layers {
		pl := &prefetchLayer{Layer: l, p: p, index: i, started: make(chan struct{}), ready: make(chan struct{})}
		var err error
		if pl.desc.Digest, err = l.Digest(); err == nil {
			if pl.desc.Size, err = l.Size(); err == nil {
				pl.desc.MediaType, err = l.MediaType()
			}
		}
		if err != nil {
			cancel()
			return nil, fmt.Errorf("prefetch: describe layer %d: %w", i, err)
		}
		if ip, ok := l.(inPlacer); ok && ip.inPlace() {
			pl.inPlace = true
		} else {
			download = true
		}
		p.layers = append(p.layers, pl)
	}
	if download && o.blobCache != "" {
		if p.cache, err = OpenBlobCache(o.blobCache); err != nil {
			cancel()
			return nil, fmt.Errorf("prefetch: %w", err)
		}
	} else if download {
		if p.dir, err = os.MkdirTemp(o.tempDir, "ocifetch-"); err != nil {
			cancel()
			return nil, fmt.Errorf("prefetch: create temp dir: %w", err)
		}
		for i, pl := range p.layers {
			pl.path = filepath.Join(p.dir, "layer-"+strconv.Itoa(i))
		}
	}

	p.g, p.gctx = errgroup.WithContext(ctx)
	p.rep = rep
	p.jobs, p.freed = o.jobs, make(chan struct{}, 1)
	go func() {
		defer close(p.done)
		for next := 0; ; next++ {
			// A free slot (or the end), then the lowest layer no reader has claimed
			// meanwhile, under one hold of mu: a reader's demand sees either the
			// slot free or the layer claimed.
			p.mu.Lock()
			for p.running >= p.jobs && p.gctx.Err() == nil {
				p.mu.Unlock()
				select {
				case <-p.freed:
				case <-p.gctx.Done():
				}
				p.mu.Lock()
			}
			for next < len(p.layers) && p.layers[next].claimed {
				next++
			}
			if next == len(p.layers) {
				p.mu.Unlock()
				break
			}
			pl := p.layers[next]
			pl.claimed = true
			run := !pl.inPlace && p.gctx.Err() == nil
			if run {
				p.start(pl)
			}
			p.mu.Unlock()
			if !run {
				if pl.inPlace {
					pl.reportInPlace(rep, len(p.layers))
				}
				pl.finish(p.gctx)
			}
		}
		p.g.Wait()
	}()
	return p, nil
}

// start runs the download of pl, which was just claimed, counting it against the limit
// of WithJobs; it gives its slot back when it ends, before its readers learn that it ended
// (a reader that goes on to the next layer then finds the slot free). p.mu is held.
func (p *Prefetcher) start(pl *prefetchLayer) {
	p.running++
	p.g.Go(func() error {
		err := pl.download(p.gctx, p.rep, len(p.layers))
		p.mu.Lock()
		p.running--
		p.mu.Unlock()
		select {
		case p.freed <- struct{}{}:
		default: // a signal is pending already
		}
		pl.finish(p.gctx)
		return err
	})
}

// Layers returns the image's layers in order. Each layer's Compressed method
// starts its blob's download if it has not started (see [Prefetch]), waits
// until it has (or the blob is found in the cache), and
// returns a reader of the blob's file that yields the bytes as they arrive:
// it waits at the end of what has arrived, and returns io.EOF only once the
// whole blob has arrived and matched its digest and size, or the download's
// error after the bytes that preceded it (a download that resumes after a
// cut goes on from the bytes received, so no byte read ever changes).
// Compressed returns the download's error itself when the download has
// already failed, and the context's if it ends first. A local blob is read
// in place, and verified as it is read. Uncompressed decompresses gzip and
// zstd blobs. Readers must be closed; a blob that finished downloading stays
// readable after [Prefetcher.Close] through readers opened before it, on
// systems that let open files be removed.
func (p *Prefetcher) Layers() []v1.Layer {
	ls := make([]v1.Layer, len(p.layers))
	for i, l := range p.layers {
		ls[i] = l
	}
	return ls
}

// Close stops the downloads still running, waits for them to end, and
// removes the temporary files; cached blobs stay in the cache. It may be
// called more than once; later calls return the first call's result.
func (p *Prefetcher) Close() error {
	p.closeOnce.Do(func() {
		p.closed.Store(true)
		p.cancel()
		<-p.done
		for _, l := range p.layers {
			if l.file != nil { // set before the download ended, which done waited for
				l.file.release()
			}
		}
		if p.dir == "" {
			return
		}
		if err := os.RemoveAll(p.dir); err != nil {
			p.rmErr = fmt.Errorf("prefetch: remove temp dir: %w", err)
		}
	})
	return p.rmErr
}

// prefetchLayer is a layer whose blob is, or is being, downloaded to path or
// to the cache, or read in place.
type prefetchLayer struct {
	v1.Layer // Digest, DiffID, Size and MediaType come from the source layer
	p        *Prefetcher
	index    int
	desc     v1.Descriptor
	path     string // temporary file, without a cache
	inPlace  bool   // a local blob, read through the source layer
	claimed  bool   // its download was started or given up, or it was read in place; guarded by p.mu

	// file is the blob's file, being written or complete; set by the
	// download before started is closed, nil when the download failed
	// before it had one.
	file      *liveFile
	started   chan struct{} // closed once file is set or the download ended
	startOnce sync.Once

	ready chan struct{} // closed when err is final
	once  sync.Once
	err   error
}

var _ v1.Layer = (*prefetchLayer)(nil)

// finish marks the download as ended, and tells the readers of its file; a
// layer whose download never began gets the cause of the cancellation as its
// error. It is called by the goroutine that ran the download.
func (l *prefetchLayer) finish(gctx context.Context) {
	l.once.Do(func() {
		if l.err == nil && !l.inPlace && l.file == nil {
			cause := context.Cause(gctx)
			if cause == nil {
				cause = errors.New("ocifetch: download did not start")
			}
			l.err = fmt.Errorf("fetch layer %s: %w", l.desc.Digest, cause)
		}
		if l.file != nil {
			l.file.end(l.err)
		}
		close(l.ready)
		l.begun()
	})
}

// begun lets Compressed go on: the layer's file is set, or the download ended.
func (l *prefetchLayer) begun() {
	l.startOnce.Do(func() { close(l.started) })
}

// openFile opens the file the download writes to, for reading, and lets
// readers at it.
func (l *prefetchLayer) openFile(name string) error {
	f, err := os.Open(name)
	if err != nil {
		return err
	}
	l.file = newLiveFile(f)
	l.begun()
	return nil
}

// inPlacer is implemented by layers of this package; inPlace reports a blob
// of a local source, which needs no copy.
type inPlacer interface {
	inPlace() bool
}

// meter returns the progress meter of the layer's download.
func (l *prefetchLayer) meter(rep *reporter, layers int, start time.Time) *progress.Meter {
	return progress.NewMeter(rep.meterFunc(), progress.Event{
		Phase: progress.PhaseDownload, Layer: l.index, Layers: layers,
		Digest: l.desc.Digest.String(), Total: l.desc.Size,
	}, start)
}

// reportDone reports a blob found in the cache, verified, as a complete download.
func (l *prefetchLayer) reportDone(rep *reporter, layers int, start time.Time) {
	m := l.meter(rep, layers, start)
	m.Add(int(l.desc.Size))
	m.Complete()
}

// reportInPlace reports a local blob, which needs no download and is read in
// place when the layer applies, with its one [progress.PhaseLocal] event.
func (l *prefetchLayer) reportInPlace(rep *reporter, layers int) {
	rep.report(progress.Event{
		Phase: progress.PhaseLocal, Layer: l.index, Layers: layers, Digest: l.desc.Digest.String(),
		Done: l.desc.Size, Total: l.desc.Size, Complete: true,
	}, true)
}

// download fetches the layer's blob, into the cache when there is one,
// through the layer's file, which readers read as it grows. Retries happen
// below, in the registry source, which resumes a cut download from the
// bytes already received.
func (l *prefetchLayer) download(ctx context.Context, rep *reporter, layers int) (err error) {
	start := time.Now()
	if c := l.p.cache; c != nil {
		var pw *progressWriter
		var f *os.File
		f, err = c.fill(ctx, l.desc, func(tmp *os.File) error {
			if err := l.openFile(tmp.Name()); err != nil {
				return err
			}
			pw = &progressWriter{w: l.file.writer(tmp), m: l.meter(rep, layers, start)}
			return l.fetchInto(ctx, pw)
		})
		switch {
		case err != nil:
		case pw != nil:
			f.Close() // the blob is read through the layer's file
			pw.m.Complete()
		default: // cached already, or by another process meanwhile
			l.file = completeFile(f, l.desc.Size)
			l.begun()
			l.reportDone(rep, layers, start)
		}
	} else {
		err = l.fetchToTemp(ctx, rep, layers, start)
	}
	if err != nil {
		err = fmt.Errorf("fetch layer %s: %w", l.desc.Digest, err)
		l.err = err
	}
	return err
}

// fetchToTemp copies the verified blob to the layer's temporary file, which
// readers read as it grows.
func (l *prefetchLayer) fetchToTemp(ctx context.Context, rep *reporter, layers int, start time.Time) (err error) {
	f, err := os.OpenFile(l.path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}()
	if err = l.openFile(l.path); err != nil {
		return err
	}
	pw := &progressWriter{w: l.file.writer(f), m: l.meter(rep, layers, start)}
	if err = l.fetchInto(ctx, pw); err != nil {
		return err
	}
	pw.m.Complete()
	return nil
}

// fetchInto copies the blob to pw, verifying it as it goes: the bytes are
// written as they arrive, and the blob is verified once the last is written.
func (l *prefetchLayer) fetchInto(ctx context.Context, pw *progressWriter) (err error) {
	var rc io.ReadCloser
	ro, ours := l.Layer.(rawOpener)
	if ours {
		rc, err = ro.openRaw(withRetryNotify(ctx, func(a Attempt) { pw.m.Retry(a.Err.Error()) }))
	} else {
		rc, err = l.Layer.Compressed()
	}
	if err != nil {
		return err
	}
	// A foreign reader may ignore ctx: closing it on cancellation unblocks it.
	stop := context.AfterFunc(ctx, func() { rc.Close() })
	defer func() {
		if stop() {
			rc.Close()
		}
	}()
	// A foreign connection that goes quiet is closed, so that the download
	// fails instead of hanging; the registry source has its own watchdog,
	// which resumes the download instead.
	var stalled atomic.Bool
	watchdog := time.AfterFunc(stallTimeout, func() {
		if !ours {
			stalled.Store(true)
			rc.Close()
		}
	})
	defer watchdog.Stop()
	vr, err := verify(rc, l.desc)
	if err != nil {
		return err
	}
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	if _, err = io.CopyBuffer(pw, layerstream.ContextReader(ctx, watchdogReader{r: vr, watchdog: watchdog}), *bp); err != nil {
		switch {
		case ctx.Err() != nil:
			err = context.Cause(ctx)
		case stalled.Load():
			err = fmt.Errorf("%w: no data for %s", errStalled, stallTimeout)
		}
		return err
	}
	return nil
}

// wait blocks until ch is closed or the prefetcher's context is done.
func (l *prefetchLayer) wait(ch <-chan struct{}) error {
	select {
	case <-ch:
		return nil
	case <-l.p.ctx.Done():
		select {
		case <-ch:
			return nil
		default:
			return fmt.Errorf("fetch layer %s: %w", l.desc.Digest, context.Cause(l.p.ctx))
		}
	}
}

// Compressed waits for the download to start, then opens a reader of the
// blob's file that follows the download (see [Prefetcher.Layers]); a local
// blob is opened in place, verified as it is read.
func (l *prefetchLayer) Compressed() (io.ReadCloser, error) {
	if l.inPlace {
		if err := l.wait(l.ready); err != nil {
			return nil, err
		}
		if l.p.closed.Load() {
			return nil, fmt.Errorf("fetch layer %s: %w", l.desc.Digest, ErrClosed)
		}
		return l.Layer.Compressed()
	}
	l.demand()
	if err := l.wait(l.started); err != nil {
		return nil, err
	}
	select {
	case <-l.ready:
		if l.err != nil {
			return nil, l.err
		}
	default:
	}
	if l.p.closed.Load() || l.file == nil {
		return nil, fmt.Errorf("fetch layer %s: %w", l.desc.Digest, ErrClosed)
	}
	rc, err := l.file.open(l.p.ctx)
	if err != nil {
		return nil, fmt.Errorf("fetch layer %s: %w", l.desc.Digest, err)
	}
	return rc, nil
}

// demand starts the layer's download at once when no download has claimed it yet, in a
// free slot of [WithJobs] if there is one and beyond the limit if every slot is taken. A
// reader waits for it, so it must not queue behind layers that nobody reads yet (a
// consumer that decodes a large layer early, as [layerstream.Pipeline] does, would wait
// for the downloads of the smaller layers below it). A download beyond the limit counts
// against it too: the loop starts no other until fewer than WithJobs run. So downloads go
// beyond the limit only for layers read ahead of the loop's order while every slot is
// busy, one for each such reader.
func (l *prefetchLayer) demand() {
	p := l.p
	p.mu.Lock()
	defer p.mu.Unlock()
	if l.claimed || p.gctx.Err() != nil {
		return // a download runs, ran or is given up by the loop, which sees the end
	}
	l.claimed = true
	p.start(l)
}

// Uncompressed decompresses the blob as Compressed reads it.
func (l *prefetchLayer) Uncompressed() (io.ReadCloser, error) {
	rc, err := l.Compressed()
	if err != nil {
		return nil, err
	}
	return uncompressed(rc)
}

// Digest returns the layer's compressed digest.
func (l *prefetchLayer) Digest() (v1.Hash, error) { return l.desc.Digest, nil }

// Size returns the layer's compressed size.
func (l *prefetchLayer) Size() (int64, error) { return l.desc.Size, nil }

// MediaType returns the layer's media type.
func (l *prefetchLayer) MediaType() (types.MediaType, error) { return l.desc.MediaType, nil }

// copyBufs holds the buffers downloads copy through: a download reads the
// body, hashes it and writes it to its file in pieces of up to this size.
// With 1 MiB instead of 256 KiB, reading, hashing and writing the five blobs
// of a 343 MiB image from a loopback registry took 0.36 s of CPU instead of
// 0.51 s (fewer socket reads and pwrites, and a cheaper hash; 2 MiB gained
// nothing more, 4 MiB cost more in the writes), for 768 KiB more per running
// download.
var copyBufs = sync.Pool{New: func() any {
	b := make([]byte, 1<<20)
	return &b
}}

// stallTimeout is how long a download may go without receiving a byte; a
// variable so that tests can shorten it.
var stallTimeout = 2 * time.Minute

// errStalled reports a download that stopped receiving data.
var errStalled = errors.New("ocifetch: download stalled")

// watchdogReader pushes back the watchdog whenever data arrives.
type watchdogReader struct {
	r        io.Reader
	watchdog *time.Timer
}

func (w watchdogReader) Read(b []byte) (int, error) {
	n, err := w.r.Read(b)
	if n > 0 {
		w.watchdog.Reset(stallTimeout)
	}
	return n, err
}

// reporter serialises progress callbacks. Intermediate events are dropped
// while another call runs, so downloads never wait on a slow callback; final
// events wait their turn.
type reporter struct {
	mu sync.Mutex
	fn progress.Func
}

// meterFunc returns the callback a meter reports through: nil when progress is off, and
// final events are those with Complete set and those reporting a new retry. Each meter
// gets its own.
func (r *reporter) meterFunc() progress.Func {
	if r.fn == nil {
		return nil
	}
	retries := 0
	return func(ev progress.Event) {
		final := ev.Complete || ev.Retries != retries
		retries = ev.Retries
		r.report(ev, final)
	}
}

func (r *reporter) report(ev progress.Event, final bool) {
	if r.fn == nil {
		return
	}
	if final {
		r.mu.Lock()
	} else if !r.mu.TryLock() {
		return
	}
	defer r.mu.Unlock()
	r.fn(ev)
}

// progressWriter counts bytes written and reports them through a meter.
type progressWriter struct {
	w io.Writer
	m *progress.Meter
}

func (p *progressWriter) Write(b []byte) (int, error) {
	n, err := p.w.Write(b)
	p.m.Add(n)
	return n, err
}
