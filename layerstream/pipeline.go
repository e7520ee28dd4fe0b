package layerstream

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"runtime"
	"strconv"
	"sync"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sys/unix"

	"github.com/img2ext4/img2ext4/internal/copystat"
	"github.com/img2ext4/img2ext4/progress"
)

const (
	// chunkSize is the unit in which a Pipeline buffers and spools uncompressed bytes.
	chunkSize = 1 << 20
	// headBacklog is how far, in bytes, the decoder of the layer being read may run ahead
	// of its reader when the memory budget is spent: it never waits for other layers, only
	// for its own reader.
	headBacklog = 8 * chunkSize
	// DefaultMemory is the default of [WithMemory].
	DefaultMemory = 48 << 20
)

// DefaultJobs returns the default of [WithJobs]: the number of CPUs the process may use
// at once (GOMAXPROCS), which follows the CPU affinity the process was started with.
func DefaultJobs() int { return runtime.GOMAXPROCS(0) }

// WithJobs lets a [Pipeline] decompress up to n layers at the same time, each in a
// goroutine of its own with the DiffID hashed on another, so that the layers of an image
// keep n cores busy while they are read in order. The default is [DefaultJobs].
func WithJobs(n int) Option {
	return func(o *options) error {
		if n < 1 || n > 64 {
			return fmt.Errorf("layerstream: jobs %d out of range [1, 64]", n)
		}
		o.jobs = n
		return nil
	}
}

// WithMemory caps the uncompressed bytes a [Pipeline] holds in memory for layers decoded
// ahead of their reader; beyond it they go to a temporary file ([WithDisk]). The layer
// being read may run a few MiB past the cap, so that it never waits on the others. The
// default is [DefaultMemory].
func WithMemory(n int64) Option {
	return func(o *options) error {
		if n < 0 {
			return fmt.Errorf("layerstream: memory budget %d is negative", n)
		}
		o.memory = n
		return nil
	}
}

// WithDisk caps the uncompressed bytes a [Pipeline] writes to temporary files in
// [WithTempDir] once the memory budget is spent (a layer decoded out of order, see
// [Pipeline], goes there first); a decoder that finds both spent waits for the reader.
// The default is half the space available in the temporary directory when more than one
// job runs, and 0 with one job (a single core gains nothing from decoding to disk ahead
// of the reader).
func WithDisk(n int64) Option {
	return func(o *options) error {
		if n < 0 {
			return fmt.Errorf("layerstream: disk budget %d is negative", n)
		}
		o.disk = n
		return nil
	}
}

// Pipeline decompresses the layers of an image ahead of their reader: up to [WithJobs]
// layers at a time, each verified against its DiffID. One decoder takes the layers in
// order, the chain the reader follows; the others take the largest layer (by compressed
// size) not started yet, so that a large layer near the top of the image decodes beside
// the small ones below it instead of alone at the end. Uncompressed bytes wait in memory
// up to [WithMemory], then in an unlinked temporary file per layer up to [WithDisk], then
// the decoders wait for the reader; a layer taken out of order, read after the layers
// below it, goes to its file first, and such layers together hold at most half the
// memory budget, which is better spent on the layers read next. When the temporary
// directory refuses a spool file or a write, the Pipeline stops spilling and its
// decoders wait in memory instead. The layers are read in order through [Pipeline.Open]; a layer's bytes
// can be read while it is still being decompressed. With one job the layers decode in
// order, one at a time. Close the Pipeline when done; its methods are not safe for
// concurrent use, but the Pipeline works alongside its reader.
//
// It cannot deadlock, whatever the budgets: a decoder waits only for its blob (which
// its download provides) and for the reader to free budget (in publish), and the decoder of the layer being read (the head) always has
// headBacklog bytes of its own, so it waits for nothing but that reader, which is
// reading. The in-order decoder takes the lowest layer not started, so every layer below
// the one it decodes has been started. When the reader waits for the head, either the
// head's decoder runs, or the head is not started; then every layer below it has been
// read (decoded) or closed (its decoder never waits for budget), and the in-order decoder cannot
// be on a layer above the head, so it is between layers and takes the head next.
type Pipeline struct {
	ctx    context.Context
	cancel context.CancelFunc
	o      *options
	wg     sync.WaitGroup

	mu      sync.Mutex
	cond    *sync.Cond
	layers  []*pipeLayer
	lo      int // every layer below lo has been started
	busy    int // workers decoding a layer and not waiting for the reader
	head    int // the layer being read
	mem     int64
	farMem  int64 // the part of mem held by layers taken out of order
	disk    int64
	noSpool bool      // a spool file could not be created or written: no more spilling
	peakMem int64     // the most mem has been, for tests
	free    []*[]byte // chunks to reuse
	mapped  int       // chunks mapped and not unmapped yet
	order   []int     // the layers in the order their decoding started, for tests
	dead    bool      // cancelled or closed
}

// pipeLayer is the state of one layer in a Pipeline, guarded by Pipeline.mu.
type pipeLayer struct {
	l      v1.Layer
	diffID v1.Hash
	name   string
	size   int64 // compressed, from the manifest; 0 when unknown

	started bool // a worker took it
	far     bool // taken while a layer below it was not started

	segs    []segment // uncompressed bytes not read yet, in order
	memHeld int64     // bytes of segs in memory
	decoded int64     // bytes decoded so far
	done    bool      // decoding ended, with err
	err     error     // nil: all bytes verified
	f       *os.File  // the spool file, once needed
	fsize   int64     // bytes written to f
	closed  bool      // the reader is done with the layer
}

// segment is a run of uncompressed bytes: a chunk in memory, or a range of the spool file.
type segment struct {
	b   *[]byte
	n   int
	off int64
}

// NewPipeline starts decompressing layers, whose DiffIDs are diffIDs, in the background.
// [WithLimit] caps each layer's uncompressed size on its own (a reader's own limit is
// checked by [Pipeline.Open]); [WithProgress], [WithDecoder] and [WithReadAhead] are
// ignored. The caller must call [Pipeline.Close].
func NewPipeline(ctx context.Context, layers []v1.Layer, diffIDs []v1.Hash, opts ...Option) (*Pipeline, error) {
	if len(layers) != len(diffIDs) {
		return nil, fmt.Errorf("layerstream: %d layers but %d diff_ids", len(layers), len(diffIDs))
	}
	o, err := makeOptions(opts)
	if err != nil {
		return nil, err
	}
	if o.disk < 0 {
		o.disk = 0
		if o.jobs > 1 {
			o.disk = freeSpace(o.tmpDir) / 2
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	p := &Pipeline{ctx: ctx, cancel: cancel, o: o}
	p.cond = sync.NewCond(&p.mu)
	for i, l := range layers {
		name := layerName(l)
		if name == "?" {
			name = strconv.Itoa(i)
		}
		size, err := l.Size()
		if err != nil {
			size = 0 // only the order of decoding depends on it
		}
		p.layers = append(p.layers, &pipeLayer{l: l, diffID: diffIDs[i], name: name, size: size})
	}
	stop := context.AfterFunc(ctx, func() {
		p.mu.Lock()
		p.dead = true
		p.cond.Broadcast()
		p.mu.Unlock()
	})
	n := min(o.jobs, len(layers))
	// A zstd decoder's second goroutine only pays while a core would otherwise idle: with
	// more decoders than one, the other decoders use the cores, and the hand-off between
	// the two goroutines is CPU and memory spent for nothing.
	zstdGoroutines := 0
	if n > 1 {
		zstdGoroutines = 1
	}
	// The in-order decoder's first layer is picked before the others start, so that layer
	// 0 is never taken as one out of order.
	p.mu.Lock()
	first := p.pick(true)
	p.mu.Unlock()
	p.wg.Add(n)
	for w := range n {
		i := -1
		if w == 0 {
			i = first
		}
		go p.worker(w == 0, i, zstdGoroutines)
	}
	go func() { p.wg.Wait(); stop() }()
	return p, nil
}

// freeSpace returns the bytes available to this process in dir (the system's temporary
// directory when dir is empty), or 0 when it cannot tell.
func freeSpace(dir string) int64 {
	if dir == "" {
		dir = os.TempDir()
	}
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0
	}
	return int64(st.Bavail) * st.Bsize
}

// worker decompresses one layer after another with a decoder it reuses, starting with
// layer first when it is not -1 (already picked): in order when inOrder, the largest layer
// not started otherwise (see [Pipeline]); its zstd decoder runs zstdGoroutines goroutines
// (0: the default).
func (p *Pipeline) worker(inOrder bool, first, zstdGoroutines int) {
	defer p.wg.Done()
	dec := Decoder{zstdGoroutines: zstdGoroutines}
	defer dec.Close()
	br := bufio.NewReaderSize(nil, 64<<10)
	for i := first; ; i = -1 {
		p.mu.Lock()
		if i < 0 {
			i = p.pick(inOrder)
		}
		if i < 0 {
			p.mu.Unlock()
			return
		}
		p.busy++
		p.mu.Unlock()
		err := p.decode(i, &dec, br)
		p.mu.Lock()
		p.busy--
		pl := p.layers[i]
		pl.done, pl.err = true, err
		p.cond.Broadcast()
		p.mu.Unlock()
	}
}

// pick marks the layer a worker decodes next as started and returns it, or -1 when every
// layer has been started or the pipeline is dead: the lowest layer not started when
// inOrder, otherwise the largest by compressed size (the lowest of equals, so layers of one
// size go in order); p.mu is held.
func (p *Pipeline) pick(inOrder bool) int {
	for p.lo < len(p.layers) && p.layers[p.lo].started {
		p.lo++
	}
	if p.dead || p.lo >= len(p.layers) {
		return -1
	}
	i := p.lo
	if !inOrder {
		for j := i + 1; j < len(p.layers); j++ {
			if pl := p.layers[j]; !pl.started && pl.size > p.layers[i].size {
				i = j
			}
		}
	}
	pl := p.layers[i]
	pl.started, pl.far = true, i > p.lo
	p.order = append(p.order, i)
	p.cond.Broadcast()
	return i
}

// openCompressed returns pl's compressed reader, or the Pipeline's error once it is
// cancelled or closed: Compressed may wait for its blob's download to start (an
// ocifetch.Prefetcher starts it at once, but another source may queue it behind the
// layers below it), and Close must not wait for that. A
// reader that comes after the cancellation is closed when it comes.
func (p *Pipeline) openCompressed(pl *pipeLayer) (io.ReadCloser, error) {
	type opened struct {
		rc  io.ReadCloser
		err error
	}
	ch := make(chan opened, 1)
	go func() {
		rc, err := pl.l.Compressed()
		ch <- opened{rc, err}
	}()
	select {
	case o := <-ch:
		if o.err != nil {
			return nil, fmt.Errorf("open layer %s: %w", pl.name, o.err)
		}
		return o.rc, nil
	case <-p.ctx.Done():
		go func() {
			if o := <-ch; o.err == nil {
				o.rc.Close()
			}
		}()
		return nil, p.ctx.Err()
	}
}

// decode decompresses layer i into its segments and verifies it.
func (p *Pipeline) decode(i int, dec *Decoder, br *bufio.Reader) error {
	pl := p.layers[i]
	if mt, err := pl.l.MediaType(); err == nil {
		if err := CheckMediaType(mt); err != nil {
			return fmt.Errorf("layer %s: %w", pl.name, err)
		}
	}
	rc, err := p.openCompressed(pl)
	if err != nil {
		return err
	}
	defer rc.Close()
	br.Reset(ContextReader(p.ctx, rc))
	r, _, err := dec.Reset(br)
	if err != nil {
		return fmt.Errorf("decompress layer %s: %w", pl.name, err)
	}

	hs := &hashStage{p: p, i: i, h: sha256.New()}
	err = p.fill(pl, r, hs)
	if herr := hs.stop(); err == nil {
		err = herr
	}
	if err != nil {
		return err
	}
	if err := p.verify(pl, hs.h); err != nil {
		return err
	}
	// Drain the compressed blob too, so that a verifying reader below sees its end.
	if _, err := io.Copy(io.Discard, br); err != nil {
		return fmt.Errorf("layer %s: %w", pl.name, err)
	}
	return nil
}

// fill reads the uncompressed stream r in chunks and hands them to hs.
func (p *Pipeline) fill(pl *pipeLayer, r io.Reader, hs *hashStage) error {
	var n int64
	for {
		b := p.get()
		off := 0
		var err error
		// The chunk is hashed in the pieces the decoder returns, while they are in cache,
		// unless it goes to the hasher goroutine.
		inline := !hs.offload()
		if inline {
			// The hasher goroutine, if it ran, is done before the decoder hashes again.
			if err := hs.stop(); err != nil {
				p.put(b)
				return err
			}
		}
		for off < len(*b) && err == nil {
			var m int
			m, err = r.Read((*b)[off:])
			if inline {
				hs.h.Write((*b)[off : off+m])
			}
			off += m
		}
		n += int64(off)
		if off > 0 {
			if herr := hs.send(segment{b: b, n: off}, inline); herr != nil {
				return herr
			}
		} else {
			p.put(b)
		}
		if n > p.o.limit {
			return &LimitError{What: "uncompressed bytes", Limit: p.o.limit}
		}
		switch err {
		case nil:
		case io.EOF:
			return nil
		default:
			if cerr := p.ctx.Err(); cerr != nil {
				return cerr
			}
			return fmt.Errorf("layer %s: %w", pl.name, err)
		}
	}
}

// hashStage hashes a layer's chunks and publishes them, in order: on the decoder's
// goroutine while every other core has a decoder busy (the cheapest place: each piece is
// hashed as the inflater returns it, in cache), and on a goroutine of its own while some
// core would otherwise idle (a layer decoded alone, the last of an image, or decoders
// ahead waiting for the reader), so that the hash runs beside the inflate instead of
// after it. A Pipeline with one job always hashes on the decoder's goroutine.
type hashStage struct {
	p    *Pipeline
	i    int
	h    hash.Hash
	ch   chan segment // to the hasher goroutine; nil while it is not running
	res  chan error   // its result once ch is closed
	errs error        // a send's error, sticky
}

// offload tells whether the next chunk goes to the hasher goroutine: whether a core has no
// decoder busy.
func (hs *hashStage) offload() bool {
	p := hs.p
	if p.o.jobs < 2 {
		return false
	}
	p.mu.Lock()
	idle := p.busy < p.o.jobs
	p.mu.Unlock()
	return idle
}

// send publishes chunk c: at once when inline (hashed already, and the hasher goroutine
// stopped before, so that the hash and the layer keep their order), through the hasher
// goroutine otherwise.
func (hs *hashStage) send(c segment, inline bool) error {
	if hs.errs != nil {
		hs.p.put(c.b)
		return hs.errs
	}
	if inline {
		if err := hs.p.publish(hs.i, c); err != nil {
			hs.p.put(c.b)
			hs.errs = err
			return err
		}
		return nil
	}
	if hs.ch == nil {
		hs.ch, hs.res = make(chan segment, 2), make(chan error, 1)
		go hs.run(hs.ch, hs.res)
	}
	hs.ch <- c
	return nil
}

// run hashes and publishes the chunks of ch until it is closed, then reports.
func (hs *hashStage) run(ch <-chan segment, res chan<- error) {
	var err error
	for c := range ch {
		if err == nil {
			hs.h.Write((*c.b)[:c.n])
			err = hs.p.publish(hs.i, c)
		}
		if err != nil {
			hs.p.put(c.b)
		}
	}
	res <- err
}

// stop waits for the hasher goroutine, if one runs, to finish, and returns the first error.
func (hs *hashStage) stop() error {
	if hs.ch != nil {
		close(hs.ch)
		if err := <-hs.res; err != nil && hs.errs == nil {
			hs.errs = err
		}
		hs.ch, hs.res = nil, nil
	}
	return hs.errs
}

// verify compares the hash of the whole layer with its DiffID.
func (p *Pipeline) verify(pl *pipeLayer, h hash.Hash) error {
	if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); got != pl.diffID.String() {
		return &DiffIDError{Layer: pl.name, Want: pl.diffID.String(), Got: got}
	}
	return nil
}

// publish appends chunk c to layer i: in memory while the budget allows (or the layer is
// being read and its reader is near), in the layer's spool file while the disk budget
// allows, and otherwise once the reader has freed some of either. A layer taken out of
// order tries its spool file first and holds at most half the memory budget.
func (p *Pipeline) publish(i int, c segment) error {
	pl := p.layers[i]
	n := int64(c.n)
	p.mu.Lock()
	defer p.mu.Unlock()
	for {
		head := i == p.head
		inMem := p.mem+n <= p.o.memory || (head && pl.memHeld < headBacklog)
		toDisk := !head && !p.noSpool && p.disk+n <= p.o.disk
		if pl.far && !head {
			inMem = inMem && !toDisk && p.farMem+n <= p.o.memory/2
		}
		switch {
		case p.dead || pl.closed:
			if err := p.ctx.Err(); err != nil {
				return err
			}
			return errors.New("layerstream: layer closed")
		case inMem:
			p.hold(pl, n)
			pl.decoded += n
			pl.segs = append(pl.segs, c)
			p.cond.Broadcast()
			return nil
		case toDisk:
			if pl.f == nil {
				f, err := p.spoolFile(pl)
				if err != nil {
					// The spool is only room to run ahead: without it the layers wait in
					// memory, as with no disk budget.
					p.noSpool = true
					continue
				}
				pl.f = f
			}
			p.disk += n
			off := pl.fsize
			pl.fsize += n
			f := pl.f
			// Only this goroutine writes f; the reader reads what segs lists.
			p.mu.Unlock()
			_, err := f.WriteAt((*c.b)[:c.n], off)
			copystat.Add(c.n)
			p.mu.Lock()
			if pl.closed {
				return errors.New("layerstream: layer closed")
			}
			if err != nil {
				// A full or failing temporary directory: give the bytes back to the
				// budget and keep this chunk, and those after it, in memory.
				p.disk -= n
				pl.fsize = off
				p.noSpool = true
				continue
			}
			p.putLocked(c.b)
			pl.decoded += n
			pl.segs = append(pl.segs, segment{n: c.n, off: off})
			p.cond.Broadcast()
			return nil
		}
		// A decoder waiting for the reader leaves its core to the others.
		p.busy--
		p.cond.Wait()
		p.busy++
	}
}

// hold counts n more bytes of pl in memory; p.mu is held.
func (p *Pipeline) hold(pl *pipeLayer, n int64) {
	p.mem += n
	pl.memHeld += n
	if pl.far {
		p.farMem += n
	}
	p.peakMem = max(p.peakMem, p.mem)
}

// unhold counts n bytes of pl out of memory; p.mu is held.
func (p *Pipeline) unhold(pl *pipeLayer, n int64) {
	p.mem -= n
	pl.memHeld -= n
	if pl.far {
		p.farMem -= n
	}
}

// spoolFile creates the unlinked temporary file of a layer.
func (p *Pipeline) spoolFile(pl *pipeLayer) (*os.File, error) {
	f, err := os.CreateTemp(p.o.tmpDir, "img2ext4-layer-*")
	if err != nil {
		return nil, fmt.Errorf("spool layer %s: %w", pl.name, err)
	}
	if err := os.Remove(f.Name()); err != nil {
		f.Close()
		return nil, fmt.Errorf("spool layer %s: %w", pl.name, err)
	}
	return f, nil
}

// get returns a chunk buffer. Chunks are mapped outside the Go heap and reused until
// Close: buffered layer bytes do not raise the garbage collector's heap goal, so the
// process holds the budget, not twice it. How many exist at once is bounded by the
// budgets, the decoders' chunks in flight and the reader's.
func (p *Pipeline) get() *[]byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	if k := len(p.free); k > 0 {
		b := p.free[k-1]
		p.free = p.free[:k-1]
		return b
	}
	b, err := unix.Mmap(-1, 0, chunkSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		b = make([]byte, chunkSize)
	} else {
		p.mapped++
	}
	return &b
}

// put returns a chunk buffer for reuse.
func (p *Pipeline) put(b *[]byte) {
	p.mu.Lock()
	p.putLocked(b)
	p.mu.Unlock()
}

func (p *Pipeline) putLocked(b *[]byte) {
	*b = (*b)[:cap(*b)]
	p.free = append(p.free, b)
}

// Open returns the verified uncompressed stream of layer i, which is read while it is
// still being decompressed: its Read returns io.EOF only once the whole layer matched its
// DiffID, an error otherwise, after the bytes that preceded it. Layers are opened in
// order, each closed before the next is opened. [WithLimit] applies to the stream as to
// one of its own, [WithProgress] reports it; the other options are ignored.
func (p *Pipeline) Open(ctx context.Context, i int, opts ...Option) (*Stream, error) {
	o, err := makeOptions(opts)
	if err != nil {
		return nil, err
	}
	if i < 0 || i >= len(p.layers) {
		return nil, fmt.Errorf("layerstream: layer %d of %d", i, len(p.layers))
	}
	p.mu.Lock()
	p.head = i
	pl := p.layers[i]
	total := int64(-1)
	if pl.done && pl.err == nil {
		total = pl.decoded
	}
	p.cond.Broadcast()
	p.mu.Unlock()
	ev := o.event
	ev.Total = total
	pr := &pipeReader{p: p, pl: pl, ctx: ctx, limit: o.limit, used: o.used}
	return &Stream{r: pr, blob: pr, layer: pl.name, meter: progress.NewMeter(o.progress, ev, time.Now())}, nil
}

// Name returns layer i's digest, for messages, or its index when it has none.
func (p *Pipeline) Name(i int) string { return p.layers[i].name }

// Close stops the decoders, waits for them and removes the spool files.
func (p *Pipeline) Close() {
	p.cancel()
	p.wg.Wait()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, pl := range p.layers {
		p.release(pl)
	}
	// Only chunks given back are unmapped: one a reader still holds (a Stream not
	// closed) stays mapped rather than vanish under it.
	for _, b := range p.free {
		if unix.Munmap(*b) == nil {
			p.mapped--
		}
	}
	p.free = nil
}

// release frees what a layer holds; p.mu is held.
func (p *Pipeline) release(pl *pipeLayer) {
	pl.closed = true
	for _, s := range pl.segs {
		if s.b != nil {
			p.unhold(pl, int64(s.n))
			p.putLocked(s.b)
		}
	}
	pl.segs = nil
	if pl.f != nil {
		pl.f.Close()
		pl.f = nil
		p.disk -= pl.fsize
		pl.fsize = 0
	}
	p.cond.Broadcast()
}

// pipeReader reads one layer of a Pipeline.
type pipeReader struct {
	p     *Pipeline
	pl    *pipeLayer
	ctx   context.Context
	limit int64
	used  int64
	n     int64

	cur  []byte
	held *[]byte // the chunk cur is in, with the memory it holds (mem) or not
	mem  bool
	buf  *[]byte // for reading file segments
}

func (r *pipeReader) Read(b []byte) (int, error) {
	for len(r.cur) == 0 {
		if err := r.next(); err != nil {
			return 0, err
		}
	}
	n := copy(b, r.cur)
	copystat.Add(n)
	r.cur = r.cur[n:]
	r.n += int64(n)
	if r.used+r.n > r.limit {
		return n, &LimitError{What: "uncompressed bytes", Limit: r.limit}
	}
	return n, nil
}

// next makes the next segment current, waiting for it when needed.
func (r *pipeReader) next() error {
	if err := r.ctx.Err(); err != nil {
		return err
	}
	if err := r.p.ctx.Err(); err != nil {
		return err
	}
	p, pl := r.p, r.pl
	p.mu.Lock()
	if r.held != nil && r.mem {
		p.unhold(pl, int64(len(*r.held)))
		p.putLocked(r.held)
		p.cond.Broadcast()
	}
	r.held = nil
	for len(pl.segs) == 0 && !pl.done && !p.dead {
		p.cond.Wait()
	}
	if len(pl.segs) == 0 {
		err := pl.err
		if !pl.done {
			err = p.ctx.Err()
			if err == nil {
				err = errors.New("layerstream: layer closed")
			}
		}
		p.mu.Unlock()
		if err == nil {
			err = io.EOF
		}
		return err
	}
	s := pl.segs[0]
	pl.segs = pl.segs[1:]
	f := pl.f
	p.mu.Unlock()
	if s.b != nil {
		// The chunk's memory is given back once it is read; its length is what was counted.
		*s.b = (*s.b)[:s.n]
		r.held, r.mem, r.cur = s.b, true, *s.b
		return nil
	}
	if r.buf == nil {
		r.buf = p.get()
	}
	b := (*r.buf)[:s.n]
	if _, err := f.ReadAt(b, s.off); err != nil {
		return fmt.Errorf("read spooled layer %s: %w", pl.name, err)
	}
	copystat.Add(len(b))
	r.cur = b
	return nil
}

// Close releases the layer.
func (r *pipeReader) Close() error {
	p := r.p
	p.mu.Lock()
	defer p.mu.Unlock()
	if r.held != nil && r.mem {
		p.unhold(r.pl, int64(len(*r.held)))
		p.putLocked(r.held)
	}
	r.held = nil
	if r.buf != nil {
		p.putLocked(r.buf)
		r.buf = nil
	}
	p.release(r.pl)
	return nil
}
