package ocifetch

import (
	"context"
	"fmt"
	"io"
	"os"
	"sync"
)

// liveFile is the file of one blob that a download appends to while readers
// read what has arrived: a reader gets the bytes as they are written, waits
// at the end of what has arrived, and gets io.EOF only once the download
// ended with the whole blob verified, or the download's error after the
// bytes before it. The download only appends (a resumed download goes on
// from the bytes received, see [blobReader]), so a byte a reader has seen is
// never changed. The file is held open by the owner and by every reader and
// closed when the last lets go; readers read it with pread, so they do not
// share an offset. Its methods are safe for concurrent use.
type liveFile struct {
	f *os.File // opened for reading

	mu   sync.Mutex
	n    int64         // bytes arrived
	done bool          // the download ended, with err
	err  error         // nil: n bytes, verified
	more chan struct{} // closed and replaced when n grows or done is set
	refs int
}

// newLiveFile returns a liveFile reading f, to which a download is about to
// append; the caller owns one reference and must call end.
func newLiveFile(f *os.File) *liveFile {
	return &liveFile{f: f, more: make(chan struct{}), refs: 1}
}

// completeFile returns a liveFile over f, which holds the whole verified
// blob of size bytes; the caller owns one reference.
func completeFile(f *os.File, size int64) *liveFile {
	lf := newLiveFile(f)
	lf.n, lf.done = size, true
	return lf
}

// wake tells waiting readers that n or done changed; lf.mu is held.
func (lf *liveFile) wake() {
	close(lf.more)
	lf.more = make(chan struct{})
}

// grow records n more bytes written to the file.
func (lf *liveFile) grow(n int) {
	if n <= 0 {
		return
	}
	lf.mu.Lock()
	lf.n += int64(n)
	lf.wake()
	lf.mu.Unlock()
}

// end records the end of the download: err is nil when the bytes written are
// the whole blob, verified. Only the first call counts.
func (lf *liveFile) end(err error) {
	lf.mu.Lock()
	defer lf.mu.Unlock()
	if lf.done {
		return
	}
	lf.done, lf.err = true, err
	lf.wake()
}

// writer returns a writer that writes to w, the file's writing side, and
// makes what it wrote readable.
func (lf *liveFile) writer(w io.Writer) io.Writer { return liveWriter{w: w, lf: lf} }

type liveWriter struct {
	w  io.Writer
	lf *liveFile
}

func (w liveWriter) Write(b []byte) (int, error) {
	n, err := w.w.Write(b)
	w.lf.grow(n)
	return n, err
}

// open returns a reader of the blob from its first byte; its Read waits for
// bytes not arrived yet until ctx ends. It fails with [ErrClosed] once the
// owner and all readers have released the file. Close may be called
// concurrently with Read, which then returns an error.
func (lf *liveFile) open(ctx context.Context) (io.ReadCloser, error) {
	lf.mu.Lock()
	defer lf.mu.Unlock()
	if lf.refs == 0 {
		return nil, ErrClosed
	}
	lf.refs++
	return &liveReader{lf: lf, ctx: ctx, closed: make(chan struct{})}, nil
}

// release drops one reference; the last closes the file.
func (lf *liveFile) release() error {
	lf.mu.Lock()
	defer lf.mu.Unlock()
	lf.refs--
	if lf.refs == 0 {
		return lf.f.Close()
	}
	return nil
}

// liveReader reads a liveFile. Read is called by one goroutine at a time.
type liveReader struct {
	lf     *liveFile
	ctx    context.Context
	off    int64
	closed chan struct{}
	once   sync.Once
}

func (r *liveReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	lf := r.lf
	for {
		select {
		case <-r.closed:
			return 0, errReaderClosed
		default:
		}
		lf.mu.Lock()
		n, done, err, more := lf.n, lf.done, lf.err, lf.more
		lf.mu.Unlock()
		if r.off < n {
			m := int(min(int64(len(p)), n-r.off))
			k, err := lf.f.ReadAt(p[:m], r.off)
			r.off += int64(k)
			if k == m {
				return k, nil
			}
			if err == io.EOF {
				err = io.ErrUnexpectedEOF // the file is shorter than what was written to it
			}
			return k, fmt.Errorf("read blob file %s: %w", lf.f.Name(), err)
		}
		if done {
			if err != nil {
				return 0, err
			}
			return 0, io.EOF
		}
		select {
		case <-more:
		case <-r.closed:
			return 0, errReaderClosed
		case <-r.ctx.Done():
			return 0, context.Cause(r.ctx)
		}
	}
}

// Close releases the reader's reference to the file.
func (r *liveReader) Close() error {
	var err error
	r.once.Do(func() {
		close(r.closed)
		err = r.lf.release()
	})
	return err
}
