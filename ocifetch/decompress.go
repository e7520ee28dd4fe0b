package ocifetch

import (
	"bufio"
	"bytes"
	"io"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

var (
	gzipMagic = []byte{0x1f, 0x8b}
	zstdMagic = []byte{0x28, 0xb5, 0x2f, 0xfd}
)

// compression names the compression of a blob, found from its first bytes.
type compression int

const (
	compressionNone compression = iota
	compressionGzip
	compressionZstd
)

func sniffCompression(head []byte) compression {
	switch {
	case bytes.HasPrefix(head, gzipMagic):
		return compressionGzip
	case bytes.HasPrefix(head, zstdMagic):
		return compressionZstd
	}
	return compressionNone
}

// decompress returns the uncompressed stream of rc, sniffing gzip or zstd.
// Closing the result closes rc.
func decompress(rc io.ReadCloser) (io.ReadCloser, error) {
	br := bufio.NewReader(rc)
	head, err := br.Peek(4)
	if err != nil && err != io.EOF {
		rc.Close()
		return nil, err
	}
	switch sniffCompression(head) {
	case compressionGzip:
		zr, err := gzip.NewReader(br)
		if err != nil {
			rc.Close()
			return nil, err
		}
		return &readCloser{Reader: zr, close: func() error {
			zr.Close()
			return rc.Close()
		}}, nil
	case compressionZstd:
		zr, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1))
		if err != nil {
			rc.Close()
			return nil, err
		}
		return &readCloser{Reader: zr, close: func() error {
			zr.Close()
			return rc.Close()
		}}, nil
	}
	return &readCloser{Reader: br, close: rc.Close}, nil
}

type readCloser struct {
	io.Reader
	close func() error
}

func (r *readCloser) Close() error { return r.close() }
