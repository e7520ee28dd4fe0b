package layerapply

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"sync"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// spool decompresses one layer ahead of the applier into an unlinked temporary file,
// verifying its DiffID on the way, so that decompressing the next layer runs on one core
// while the current one is applied on the other. Layers are still applied strictly in
// order; only the decompression moves ahead. The file holds one uncompressed layer at most
// and disappears when closed.
type spool struct {
	done chan struct{}
	f    *os.File
	size int64
	err  error
}

// startSpool begins decompressing l into a new spool in dir. limit caps its uncompressed
// size.
func startSpool(ctx context.Context, wg *sync.WaitGroup, l v1.Layer, diffID v1.Hash, dir string, limit int64) *spool {
	s := &spool{done: make(chan struct{})}
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(s.done)
		s.err = s.fill(ctx, l, diffID, dir, limit)
		if s.err != nil && s.f != nil {
			s.f.Close()
			s.f = nil
		}
	}()
	return s
}

func (s *spool) fill(ctx context.Context, l v1.Layer, diffID v1.Hash, dir string, limit int64) (err error) {
	digest := "?"
	if d, derr := l.Digest(); derr == nil {
		digest = d.String()
	}
	f, err := os.CreateTemp(dir, "img2ext4-layer-*")
	if err != nil {
		return fmt.Errorf("spool layer %s: %w", digest, err)
	}
	s.f = f
	if err := os.Remove(f.Name()); err != nil {
		return fmt.Errorf("spool layer %s: %w", digest, err)
	}
	rc, err := l.Compressed()
	if err != nil {
		return fmt.Errorf("open layer %s: %w", digest, err)
	}
	defer func() {
		if cerr := rc.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("close layer %s: %w", digest, cerr)
		}
	}()
	br := bufio.NewReaderSize(&ctxReader{ctx: ctx, r: rc}, 64<<10)
	var dec io.Reader = br
	head, _ := br.Peek(4)
	switch sniff(head) {
	case 'g':
		gz, err := gzip.NewReader(br)
		if err != nil {
			return fmt.Errorf("decompress layer %s: %w", digest, err)
		}
		dec = gz
	case 'z':
		zd, err := zstd.NewReader(br, zstd.WithDecoderMaxMemory(1<<30), zstd.WithDecoderConcurrency(1))
		if err != nil {
			return fmt.Errorf("decompress layer %s: %w", digest, err)
		}
		defer zd.Close()
		dec = zd
	}
	h := sha256.New()
	bw := bufio.NewWriterSize(f, 1<<20)
	n, err := io.Copy(io.MultiWriter(bw, h), &limitReader{r: dec, n: new(int64), max: limit})
	if err != nil {
		return fmt.Errorf("layer %s: %w", digest, err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("spool layer %s: %w", digest, err)
	}
	// Drain the compressed stream, so a verifying reader below sees EOF.
	if _, err := io.Copy(io.Discard, br); err != nil {
		return fmt.Errorf("layer %s: %w", digest, err)
	}
	if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); got != diffID.String() {
		return &DiffIDError{Layer: digest, Want: diffID.String(), Got: got}
	}
	s.size = n
	return nil
}

// wait returns the spooled layer once it is complete.
func (s *spool) wait(ctx context.Context) (*os.File, int64, error) {
	select {
	case <-s.done:
	case <-ctx.Done():
		return nil, 0, ctx.Err()
	}
	return s.f, s.size, s.err
}

// close releases the spool file; call it after the goroutine ended.
func (s *spool) close() {
	if s.f != nil {
		s.f.Close()
		s.f = nil
	}
}

// sniff tells the compression from a stream's first bytes: 'g' gzip, 'z' zstd, 0 none.
func sniff(head []byte) byte {
	switch {
	case len(head) >= 2 && head[0] == gzipMagic[0] && head[1] == gzipMagic[1]:
		return 'g'
	case len(head) >= 4 && string(head[:4]) == string(zstdMagic):
		return 'z'
	}
	return 0
}

// ctxReader stops reading once ctx is done.
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
