package layerstream

import (
	"io"
	"sync"

	"github.com/img2ext4/img2ext4/internal/copystat"
)

// readAhead reads its source in a goroutine of its own, a few large chunks ahead of its
// consumer, so that decompression on one core overlaps with what the consumer does with
// the bytes (hashing, tar parsing, writing the sink) on another. Errors from the source,
// io.EOF included, reach the consumer after the bytes that preceded them.
type readAhead struct {
	full chan chunk
	free chan []byte
	stop chan struct{}
	wg   sync.WaitGroup

	cur  chunk
	off  int
	once sync.Once
}

type chunk struct {
	b   []byte
	err error
}

// newReadAhead starts reading r into n buffers of size bytes. The caller must Close it.
func newReadAhead(r io.Reader, n, size int) *readAhead {
	ra := &readAhead{full: make(chan chunk, n), free: make(chan []byte, n), stop: make(chan struct{})}
	for range n {
		ra.free <- make([]byte, size)
	}
	ra.wg.Add(1)
	go ra.fill(r)
	return ra
}

func (ra *readAhead) fill(r io.Reader) {
	defer ra.wg.Done()
	for {
		var b []byte
		select {
		case b = <-ra.free:
		case <-ra.stop:
			return
		}
		n := 0
		var err error
		for n < len(b) && err == nil {
			var m int
			m, err = r.Read(b[n:])
			n += m
		}
		select {
		case ra.full <- chunk{b[:n], err}:
		case <-ra.stop:
			return
		}
		if err != nil {
			return
		}
	}
}

// Read implements io.Reader.
func (ra *readAhead) Read(p []byte) (int, error) {
	for ra.off == len(ra.cur.b) {
		if ra.cur.err != nil {
			return 0, ra.cur.err
		}
		if ra.cur.b != nil {
			ra.free <- ra.cur.b[:cap(ra.cur.b)]
		}
		ra.cur, ra.off = <-ra.full, 0
	}
	n := copy(p, ra.cur.b[ra.off:])
	copystat.Add(n)
	ra.off += n
	return n, nil
}

// Close stops the reading goroutine and waits for it to return, so the source can be used
// again by the caller.
func (ra *readAhead) Close() {
	ra.once.Do(func() { close(ra.stop) })
	ra.wg.Wait()
}
