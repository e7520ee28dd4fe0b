package artifact

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Caps on what an index may describe; [ParseIndex] refuses more.
const (
	// MaxIndexSize is the largest chunk index read, in bytes.
	MaxIndexSize = 64 << 20
	// MaxImageSize is the largest image an index may describe: 16 TiB, ext4's limit
	// with 4 KiB blocks.
	MaxImageSize = 16 << 40
	// MaxChunkSize is the largest chunk size an index may use, 64 MiB: a chunk is held
	// in memory, once compressed and once not, by each of the fetching workers.
	MaxChunkSize = 64 << 20
	// minChunkSize is the smallest: one ext4 block.
	minChunkSize = 4096
)

// compressionZstd is the only compression an index names.
const compressionZstd = "zstd"

// Index is the chunk index, the config blob of an artifact: how the image is cut into
// chunks, and for each the blob that holds it or that it is a hole. It marshals to the
// JSON [ParseIndex] reads.
type Index struct {
	// ChunkSize is the chunk size, a power of two: every data chunk but the last is
	// this long and starts at a multiple of it, and holes start at multiples of it.
	ChunkSize int64 `json:"chunkSize"`
	// Size is the size of the image in bytes.
	Size int64 `json:"size"`
	// Compression is the compression of every chunk blob: "zstd".
	Compression string `json:"compression"`
	// Chunks covers the image in order, from offset 0 to Size, without gaps or overlaps.
	Chunks []Chunk `json:"chunks"`
}

// Chunk is one extent of the image in an [Index]: a data chunk held in a blob, or a run
// of all-zero chunks (a hole) that has no blob and reads back zeros.
type Chunk struct {
	// Offset is where the extent starts in the image, in bytes.
	Offset int64 `json:"offset"`
	// Length is its length in bytes: the chunk size (or what is left of the image at its
	// end) for a data chunk, any multiple of the chunk size (or up to the end) for a hole.
	Length int64 `json:"length"`
	// Digest and Size are the digest and size of the compressed blob; zero for a hole.
	Digest v1.Hash `json:"digest,omitzero"`
	Size   int64   `json:"size,omitempty"`
	// ContentDigest is the SHA-256 of the chunk's Length uncompressed bytes; zero for a
	// hole.
	ContentDigest v1.Hash `json:"contentDigest,omitzero"`
}

// Hole reports whether c is a hole.
func (c Chunk) Hole() bool { return c.Digest == (v1.Hash{}) }

// maxCompressed is the largest compressed size accepted for a chunk of n bytes: zstd's
// worst case (raw blocks) is n plus a few bytes per 128 KiB block and a frame header.
func maxCompressed(n int64) int64 { return n + n/1024 + 1024 }

// ParseIndex reads and validates a chunk index: at most [MaxIndexSize] bytes of JSON
// with no unknown fields, a power-of-two chunk size from 4 KiB to [MaxChunkSize], an
// image of at most [MaxImageSize] bytes covered by the chunks in order without gaps or
// overlaps, data chunks aligned and one chunk long (the last may be shorter), holes
// aligned, SHA-256 digests, compressed sizes a chunk can have, and one size, length
// and content digest for every blob used twice. Anything else wraps [ErrCorrupt].
func ParseIndex(b []byte) (*Index, error) {
	fail := func(format string, args ...any) (*Index, error) {
		return nil, fmt.Errorf("%w: chunk index: %s", ErrCorrupt, fmt.Sprintf(format, args...))
	}
	if len(b) > MaxIndexSize {
		return fail("%d bytes, more than %d", len(b), MaxIndexSize)
	}
	var x Index
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(&x); err != nil {
		return fail("%v", err)
	}
	if _, err := d.Token(); err != io.EOF {
		return fail("data after the JSON object")
	}
	cs := x.ChunkSize
	if cs < minChunkSize || cs > MaxChunkSize || cs&(cs-1) != 0 {
		return fail("chunk size %d is not a power of two from %d to %d", cs, minChunkSize, MaxChunkSize)
	}
	if x.Size < 0 || x.Size > MaxImageSize {
		return fail("image size %d out of range 0..%d", x.Size, int64(MaxImageSize))
	}
	if x.Compression != compressionZstd {
		return fail("compression %q, want %q", x.Compression, compressionZstd)
	}
	type blob struct {
		size, length int64
		content      v1.Hash
	}
	blobs := map[v1.Hash]blob{}
	var end int64
	for i, c := range x.Chunks {
		if c.Offset != end {
			return fail("chunk %d starts at %d, want %d", i, c.Offset, end)
		}
		if c.Length <= 0 || c.Length > x.Size-c.Offset {
			return fail("chunk %d at %d: length %d out of range 1..%d", i, c.Offset, c.Length, x.Size-c.Offset)
		}
		end = c.Offset + c.Length
		if c.Offset%cs != 0 {
			return fail("chunk %d at %d: not a multiple of the chunk size", i, c.Offset)
		}
		if c.Hole() {
			if c.Size != 0 || c.ContentDigest != (v1.Hash{}) {
				return fail("hole %d at %d has a size or content digest", i, c.Offset)
			}
			if c.Length%cs != 0 && end != x.Size {
				return fail("hole %d at %d: length %d is not a multiple of the chunk size", i, c.Offset, c.Length)
			}
			continue
		}
		if c.Length != cs && end != x.Size || c.Length > cs {
			return fail("chunk %d at %d: length %d, want %d", i, c.Offset, c.Length, cs)
		}
		if c.Digest.Algorithm != "sha256" || c.ContentDigest.Algorithm != "sha256" {
			return fail("chunk %d at %d: want sha256 digest and content digest", i, c.Offset)
		}
		if c.Size <= 0 || c.Size > maxCompressed(c.Length) {
			return fail("chunk %d at %d: compressed size %d out of range 1..%d", i, c.Offset, c.Size, maxCompressed(c.Length))
		}
		b := blob{c.Size, c.Length, c.ContentDigest}
		if prev, ok := blobs[c.Digest]; ok && prev != b {
			return fail("chunk %d at %d: blob %s listed with two sizes, lengths or contents", i, c.Offset, c.Digest)
		}
		blobs[c.Digest] = b
	}
	if end != x.Size {
		return fail("chunks end at %d, the image at %d", end, x.Size)
	}
	return &x, nil
}

// Marshal returns the JSON of x, as [Push] stores it in the config blob.
func (x *Index) Marshal() ([]byte, error) { return json.Marshal(x) }

// Blobs returns the descriptors of the distinct blobs of x's data chunks, in the order
// of their first chunk: the layers of the artifact manifest.
func (x *Index) Blobs() []v1.Descriptor {
	seen := map[v1.Hash]bool{}
	var ds []v1.Descriptor
	for _, c := range x.Chunks {
		if c.Hole() || seen[c.Digest] {
			continue
		}
		seen[c.Digest] = true
		ds = append(ds, v1.Descriptor{MediaType: ChunkMediaType, Digest: c.Digest, Size: c.Size})
	}
	return ds
}

// DataBytes returns how many bytes of the image its data chunks cover.
func (x *Index) DataBytes() int64 {
	var n int64
	for _, c := range x.Chunks {
		if !c.Hole() {
			n += c.Length
		}
	}
	return n
}
