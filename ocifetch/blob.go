package ocifetch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// blobReader reads a registry blob, resuming with a Range request from the
// bytes already delivered when a connection is cut, stalls or ends early.
// The bytes it delivers are unverified: callers wrap it with [verify], so
// the digest covers the prefix read before a cut and the rest read after.
// Read is called by one goroutine; Close may be called concurrently with it.
type blobReader struct {
	ctx  context.Context
	s    *registrySource
	desc v1.Descriptor
	st   *retryState
	off  int64 // bytes delivered
	err  error // sticky

	noRange bool // the registry refused a Range request

	mu       sync.Mutex
	body     io.ReadCloser      // of the current attempt; nil between attempts
	cancel   context.CancelFunc // of the current attempt
	watchdog *time.Timer        // cancels a quiet attempt
	stalled  atomic.Bool
	closed   bool
}

var _ io.ReadCloser = (*blobReader)(nil)

// errReaderClosed reports a read after Close.
var errReaderClosed = errors.New("ocifetch: blob reader closed")

// open starts an attempt from b.off, retrying answers that cannot be read
// from (a length that differs from the descriptor's) within the budget.
func (b *blobReader) open() error {
	for {
		err := b.openOnce()
		if err == nil {
			return nil
		}
		var final *finalError
		if errors.As(err, &final) {
			return final.err
		}
		if cerr := context.Cause(b.ctx); cerr != nil {
			return cerr
		}
		wait, err := b.st.fail(err, 0)
		if err != nil {
			return b.s.wrap(err)
		}
		if err := sleep(b.ctx, wait); err != nil {
			return err
		}
	}
}

// finalError marks an error of [registrySource.get], which has already been
// through the retry budget.
type finalError struct{ err error }

func (e *finalError) Error() string { return e.err.Error() }

func (b *blobReader) openOnce() error {
	actx, cancel := context.WithCancel(b.ctx)
	b.stalled.Store(false)
	watchdog := time.AfterFunc(stallTimeout, func() {
		b.stalled.Store(true)
		cancel()
	})
	from, to := b.off, b.desc.Size-1
	if b.noRange {
		from = 0
	}
	resp, err := b.s.get(actx, b.st, b.s.url("blobs", b.desc.Digest.String()), "", from, to)
	if err != nil {
		watchdog.Stop()
		cancel()
		if errors.Is(err, errRangeRefused) && !b.noRange {
			// Ask for the whole blob again and skip what was delivered.
			b.noRange = true
			return b.openOnce()
		}
		if b.stalled.Load() {
			return fmt.Errorf("%w: no answer for %s", errStalled, stallTimeout)
		}
		return &finalError{err}
	}
	fail := func(err error) error {
		watchdog.Stop()
		resp.Body.Close()
		cancel()
		return err
	}
	size := b.desc.Size
	switch {
	case resp.StatusCode == http.StatusPartialContent:
		start, err := contentRangeStart(resp.Header.Get("Content-Range"))
		if err != nil || start != b.off {
			return fail(&finalError{fmt.Errorf("ocifetch: blob %s: asked for bytes %d- and got Content-Range %q", b.desc.Digest, b.off, resp.Header.Get("Content-Range"))})
		}
		if resp.ContentLength >= 0 && size >= 0 && resp.ContentLength != size-b.off {
			return fail(fmt.Errorf("%w (Content-Length %d from byte %d): %w", errBadLength, resp.ContentLength, b.off, &SizeError{Digest: b.desc.Digest, Size: size, Got: b.off + resp.ContentLength}))
		}
	default:
		if resp.ContentLength >= 0 && size >= 0 && resp.ContentLength != size {
			return fail(fmt.Errorf("%w (Content-Length %d): %w", errBadLength, resp.ContentLength, &SizeError{Digest: b.desc.Digest, Size: size, Got: resp.ContentLength}))
		}
		if b.off > 0 {
			// The registry ignored the Range: skip what was already delivered.
			// The digest checked at the end covers both parts.
			if _, err := io.CopyN(io.Discard, resp.Body, b.off); err != nil {
				return fail(fmt.Errorf("ocifetch: blob %s: skip %d bytes already read: %w", b.desc.Digest, b.off, err))
			}
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return fail(&finalError{errReaderClosed})
	}
	b.body, b.cancel, b.watchdog = resp.Body, cancel, watchdog
	return nil
}

// contentRangeStart returns the first byte of a "bytes FIRST-LAST/SIZE" header.
func contentRangeStart(h string) (int64, error) {
	rest, ok := strings.CutPrefix(h, "bytes ")
	if !ok {
		return 0, fmt.Errorf("bad Content-Range %q", h)
	}
	first, _, ok := strings.Cut(rest, "-")
	if !ok {
		return 0, fmt.Errorf("bad Content-Range %q", h)
	}
	return strconv.ParseInt(first, 10, 64)
}

// endAttempt closes the current attempt's body.
func (b *blobReader) endAttempt() {
	b.mu.Lock()
	body, cancel, watchdog := b.body, b.cancel, b.watchdog
	b.body, b.cancel, b.watchdog = nil, nil, nil
	b.mu.Unlock()
	if body != nil {
		watchdog.Stop()
		body.Close()
		cancel()
	}
}

func (b *blobReader) Read(p []byte) (int, error) {
	for {
		if b.err != nil {
			return 0, b.err
		}
		b.mu.Lock()
		body, watchdog, closed := b.body, b.watchdog, b.closed
		b.mu.Unlock()
		if closed {
			b.err = errReaderClosed
			continue
		}
		if body == nil {
			if err := b.open(); err != nil {
				b.err = err
			}
			continue
		}
		n, err := body.Read(p)
		if n > 0 {
			b.off += int64(n)
			b.st.progressed = true
			watchdog.Reset(stallTimeout)
		}
		if err == nil {
			return n, nil
		}
		size := b.desc.Size
		if err == io.EOF && (size < 0 || b.off >= size) {
			b.endAttempt()
			b.err = io.EOF
			return n, io.EOF
		}
		b.endAttempt()
		switch {
		case b.ctx.Err() != nil:
			b.err = context.Cause(b.ctx)
			return n, b.err
		case b.stalled.Load():
			err = fmt.Errorf("%w: no data for %s at byte %d", errStalled, stallTimeout, b.off)
		case err == io.EOF || errors.Is(err, io.ErrUnexpectedEOF):
			err = &SizeError{Digest: b.desc.Digest, Size: size, Got: b.off}
		default:
			err = fmt.Errorf("read blob %s at byte %d: %w", b.desc.Digest, b.off, err)
		}
		b.mu.Lock()
		closed = b.closed
		b.mu.Unlock()
		if closed {
			b.err = errReaderClosed
			return n, b.err
		}
		wait, gerr := b.st.fail(err, 0)
		if gerr != nil {
			b.err = b.s.wrap(gerr)
			return n, b.err
		}
		if err := sleep(b.ctx, wait); err != nil {
			b.err = err
			return n, err
		}
		if n > 0 {
			return n, nil
		}
	}
}

// Close ends the download; a Read running concurrently returns an error.
func (b *blobReader) Close() error {
	b.mu.Lock()
	b.closed = true
	body, cancel, watchdog := b.body, b.cancel, b.watchdog
	b.body, b.cancel, b.watchdog = nil, nil, nil
	b.mu.Unlock()
	if body != nil {
		watchdog.Stop()
		cancel()
		return body.Close()
	}
	return nil
}
