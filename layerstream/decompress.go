package layerstream

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"runtime"
	"strings"

	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// Compression names the compression of a blob.
type Compression int

const (
	// None is an uncompressed tar.
	None Compression = iota
	// Gzip is one or more gzip members.
	Gzip
	// Zstd is one or more zstd frames.
	Zstd
)

// String returns "none", "gzip" or "zstd".
func (c Compression) String() string {
	switch c {
	case Gzip:
		return "gzip"
	case Zstd:
		return "zstd"
	}
	return "none"
}

var (
	gzipMagic = []byte{0x1f, 0x8b}
	zstdMagic = []byte{0x28, 0xb5, 0x2f, 0xfd}
)

// Sniff tells the compression from the first bytes of a blob (four are enough).
func Sniff(head []byte) Compression {
	switch {
	case bytes.HasPrefix(head, gzipMagic):
		return Gzip
	case bytes.HasPrefix(head, zstdMagic):
		return Zstd
	}
	return None
}

// CheckMediaType refuses a layer media type whose compression this package cannot decode
// ("+bzip2", "+xz", ...). Gzip, zstd, plain tar and media types that name no compression
// at all pass: the bytes themselves decide between those, because registries and
// "docker save" archives do not always label them right.
func CheckMediaType(mt types.MediaType) error {
	s := string(mt)
	if i := strings.IndexByte(s, ';'); i >= 0 {
		s = s[:i]
	}
	i := strings.LastIndexByte(s, '+')
	if i < 0 {
		return nil
	}
	switch strings.TrimSpace(s[i+1:]) {
	case "gzip", "zstd", "json":
		return nil
	}
	return fmt.Errorf("%w: layer media type %q", ErrUnsupportedCompression, string(mt))
}

// maxZstdWindow caps the memory a zstd frame may ask its decoder for.
const maxZstdWindow = 1 << 30

// zstdConcurrency is the goroutines a new zstd decoder uses: 2 decode a stream's blocks
// while its sequences are executed, which took a 391 MiB layer from 1.41 to 0.58 s
// (median of 9, a loaded 2-core machine) for 7 % more CPU; more cost more CPU (20 % with
// 4) for no more speed. With one CPU it is 1, and in a [Pipeline] with more than one
// decoder too. bench/RESULTS.md has the numbers.
func zstdConcurrency() int { return min(2, runtime.GOMAXPROCS(0)) }

// Decoder decompresses one blob after another, reusing its gzip and zstd state. The zero
// Decoder is ready to use. A Decoder is not safe for concurrent use; call Close when done
// with it.
type Decoder struct {
	gz *gzip.Reader
	zd *zstd.Decoder
	// zstdGoroutines is the concurrency of its zstd decoder; 0 is zstdConcurrency().
	zstdGoroutines int
}

// Reset returns the uncompressed stream of br, picking the decoder from its first bytes.
// The stream is valid until the next Reset or Close.
func (d *Decoder) Reset(br *bufio.Reader) (io.Reader, Compression, error) {
	head, _ := br.Peek(4)
	switch c := Sniff(head); c {
	case Gzip:
		if d.gz == nil {
			gz, err := gzip.NewReader(br)
			if err != nil {
				return nil, c, err
			}
			d.gz = gz
		} else if err := d.gz.Reset(br); err != nil {
			return nil, c, err
		}
		return d.gz, c, nil
	case Zstd:
		if d.zd == nil {
			n := d.zstdGoroutines
			if n == 0 {
				n = zstdConcurrency()
			}
			zd, err := zstd.NewReader(br, zstd.WithDecoderMaxMemory(maxZstdWindow), zstd.WithDecoderConcurrency(n))
			if err != nil {
				return nil, c, err
			}
			d.zd = zd
		} else if err := d.zd.Reset(br); err != nil {
			return nil, c, err
		}
		return d.zd, c, nil
	}
	return br, None, nil
}

// Close releases the decoders' goroutines and memory.
func (d *Decoder) Close() {
	if d.zd != nil {
		d.zd.Close()
		d.zd = nil
	}
	d.gz = nil
}

// Decompress returns the uncompressed stream of r, sniffing gzip or zstd from its first
// bytes; anything else passes through as it is. Nothing is verified: use [Open] for a
// layer. Closing the result releases the decoder; it does not close r.
func Decompress(r io.Reader) (io.ReadCloser, error) {
	d := new(Decoder)
	dec, _, err := d.Reset(bufio.NewReaderSize(r, 64<<10))
	if err != nil {
		return nil, fmt.Errorf("layerstream: decompress: %w", err)
	}
	return &decompressed{Reader: dec, d: d}, nil
}

type decompressed struct {
	io.Reader
	d *Decoder
}

func (r *decompressed) Close() error {
	r.d.Close()
	return nil
}
