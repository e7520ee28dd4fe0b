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
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/img2ext4/img2ext4/progress"
)

type options struct {
	progress progress.Func
	event    progress.Event
	limit    int64
	used     int64
	ahead    int
	decoder  *Decoder
	tmpDir   string
	jobs     int   // Pipeline decoders
	memory   int64 // Pipeline memory budget
	disk     int64 // Pipeline disk budget; -1 for the default
}

// Option configures [Open], [NewPipeline] and [Pipeline.Open].
type Option func(*options) error

func makeOptions(opts []Option) (*options, error) {
	o := &options{limit: 1 << 40, ahead: 4, jobs: DefaultJobs(), memory: DefaultMemory, disk: -1}
	for _, opt := range opts {
		if err := opt(o); err != nil {
			return nil, err
		}
	}
	return o, nil
}

// WithProgress reports the uncompressed bytes read from the stream to fn, in events that
// copy ev and fill in Done, Total, Elapsed, BytesPerSec and, once the stream has been read
// and verified to its end, Complete. Total is the uncompressed size when it is known
// before the end (a spooled layer), -1 otherwise; the final event always has Total equal
// to Done. fn is called from the goroutine reading the stream. The default is no reporting.
func WithProgress(fn progress.Func, ev progress.Event) Option {
	return func(o *options) error { o.progress, o.event = fn, ev; return nil }
}

// WithLimit fails the stream with a [*LimitError] once used bytes plus the stream's own
// uncompressed bytes pass max, so that one budget can span the layers of an image. The
// default is max 1 TiB, used 0.
func WithLimit(max, used int64) Option {
	return func(o *options) error {
		if max <= 0 || used < 0 {
			return fmt.Errorf("layerstream: limit %d with %d used is out of range", max, used)
		}
		o.limit, o.used = max, used
		return nil
	}
}

// WithReadAhead decompresses up to chunks MiB ahead of the reader, in a goroutine of its
// own, so that decompression on one core overlaps with what the reader does with the bytes
// on another. The default is 4; 0 decompresses in the reader's goroutine.
func WithReadAhead(chunks int) Option {
	return func(o *options) error {
		if chunks < 0 || chunks > 64 {
			return fmt.Errorf("layerstream: read-ahead %d out of range [0, 64]", chunks)
		}
		o.ahead = chunks
		return nil
	}
}

// WithDecoder decompresses with d, reusing its state from earlier streams; the caller
// closes d. The default is a decoder of the stream's own, released by [Stream.Close].
func WithDecoder(d *Decoder) Option {
	return func(o *options) error { o.decoder = d; return nil }
}

// WithTempDir puts the spool files of a [Pipeline] in dir. The default is the system's temporary
// directory.
func WithTempDir(dir string) Option {
	return func(o *options) error { o.tmpDir = dir; return nil }
}

// Stream is the uncompressed tar stream of one layer. Read yields the uncompressed bytes;
// when they end, the stream drains what remains of the compressed blob (so that a verifying
// reader below sees its end), checks the DiffID, and returns [io.EOF] only when it matches,
// a [*DiffIDError] otherwise. A Stream is not safe for concurrent use.
type Stream struct {
	r     io.Reader // what Read reads
	ra    *readAhead
	blob  io.Closer     // the compressed blob, closed by Close
	br    *bufio.Reader // the compressed bytes, drained at the end; nil when verified already
	dec   *Decoder      // owned decoder, or nil
	vr    *verifier     // nil when verified already
	layer string
	meter *progress.Meter
	err   error
}

// Open returns the verified uncompressed stream of l, which must hash to diffID. The
// caller closes the stream; Open closes the blob it opens when the stream is closed.
func Open(ctx context.Context, l v1.Layer, diffID v1.Hash, opts ...Option) (*Stream, error) {
	o, err := makeOptions(opts)
	if err != nil {
		return nil, err
	}
	name := layerName(l)
	if mt, err := l.MediaType(); err == nil {
		if err := CheckMediaType(mt); err != nil {
			return nil, fmt.Errorf("layer %s: %w", name, err)
		}
	}
	rc, err := l.Compressed()
	if err != nil {
		return nil, fmt.Errorf("open layer %s: %w", name, err)
	}
	s := &Stream{blob: rc, layer: name}
	s.br = bufio.NewReaderSize(ContextReader(ctx, rc), 64<<10)
	d := o.decoder
	if d == nil {
		d = new(Decoder)
		s.dec = d
	}
	dec, _, err := d.Reset(s.br)
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("decompress layer %s: %w", name, err)
	}
	s.vr = &verifier{r: dec, hash: sha256.New(), want: diffID.String(), limit: o.limit, used: o.used}
	s.r = s.vr
	if o.ahead > 0 {
		s.ra = newReadAhead(s.vr, o.ahead, 1<<20)
		s.r = s.ra
	}
	ev := o.event
	ev.Total = -1
	s.meter = progress.NewMeter(o.progress, ev, time.Now())
	return s, nil
}

// Read reads uncompressed bytes; see [Stream] for what happens at the end.
func (s *Stream) Read(p []byte) (int, error) {
	if s.err != nil {
		return 0, s.err
	}
	n, err := s.r.Read(p)
	s.meter.Add(n)
	if err == io.EOF {
		err = s.finish()
	}
	if err != nil {
		s.err = err
	}
	return n, err
}

// finish verifies the stream once its uncompressed bytes ended.
func (s *Stream) finish() error {
	if s.ra != nil {
		s.ra.Close() // the decoder is done with br
	}
	if s.vr != nil {
		// Drain the compressed blob too, so that a verifying reader below sees its end.
		if _, err := io.Copy(io.Discard, s.br); err != nil {
			return fmt.Errorf("layer %s: %w", s.layer, err)
		}
		if got := "sha256:" + hex.EncodeToString(s.vr.hash.Sum(nil)); got != s.vr.want {
			return &DiffIDError{Layer: s.layer, Want: s.vr.want, Got: got}
		}
	}
	s.meter.SetTotal(s.meter.Done())
	s.meter.Complete()
	return io.EOF
}

// Size returns the uncompressed bytes read so far: the layer's uncompressed size once Read
// has returned io.EOF.
func (s *Stream) Size() int64 { return s.meter.Done() }

// Close stops the read-ahead, releases the decoder unless it came from [WithDecoder], and
// closes the blob. It may be called at any time, and more than once.
func (s *Stream) Close() error {
	if s.ra != nil {
		s.ra.Close()
	}
	if s.dec != nil {
		s.dec.Close()
		s.dec = nil
	}
	if s.err == nil {
		s.err = errors.New("layerstream: read after close")
	}
	if s.blob == nil {
		return nil
	}
	err := s.blob.Close()
	s.blob = nil
	if err != nil {
		return fmt.Errorf("close layer %s: %w", s.layer, err)
	}
	return nil
}

// verifier hashes the uncompressed bytes and enforces the byte limit. With read-ahead it
// runs in the read-ahead goroutine, so hashing overlaps with the reader's work too.
type verifier struct {
	r     io.Reader
	hash  hash.Hash
	want  string
	n     int64
	limit int64
	used  int64
}

func (v *verifier) Read(p []byte) (int, error) {
	n, err := v.r.Read(p)
	v.hash.Write(p[:n])
	v.n += int64(n)
	if v.used+v.n > v.limit {
		return n, &LimitError{What: "uncompressed bytes", Limit: v.limit}
	}
	return n, err
}

// ContextReader returns a reader that fails with ctx's error once ctx is done, checked
// before every read of r.
func ContextReader(ctx context.Context, r io.Reader) io.Reader {
	return &ctxReader{ctx: ctx, r: r}
}

type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// layerName is the layer's digest for messages, or "?" when it has none.
func layerName(l v1.Layer) string {
	if d, err := l.Digest(); err == nil {
		return d.String()
	}
	return "?"
}
