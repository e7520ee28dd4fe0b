package artifact

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/img2ext4/img2ext4/ocifetch"
	"github.com/klauspost/compress/zstd"
	"golang.org/x/sync/errgroup"
)

// maxManifestRead is the largest artifact manifest [Open] reads.
const maxManifestRead = 8 << 20

// Artifact is an ext4 image artifact in a registry, its manifest and chunk index read
// and checked by [Open]; [Artifact.Fetch] writes the image.
type Artifact struct {
	// Ref is the manifest's repository and digest.
	Ref name.Digest
	// Descriptor is the manifest's descriptor, with its artifactType and annotations.
	Descriptor v1.Descriptor
	// Manifest is the artifact manifest.
	Manifest *v1.Manifest
	// Index is the chunk index, from the config blob.
	Index *Index

	jobs   int
	puller *remote.Puller
	ropts  []remote.Option
}

// Size returns the size of the image in bytes.
func (a *Artifact) Size() int64 { return a.Index.Size }

// Open resolves ref (a tag or a digest in a registry repository) to an ext4 image
// artifact: the manifest must be an OCI image manifest of artifactType [ArtifactType]
// (else [ErrNotArtifact]), and its config blob a chunk index that [ParseIndex] accepts,
// whose blobs are exactly the manifest's layers. The index is verified against the
// config digest before it is parsed.
func Open(ctx context.Context, ref string, opts ...Option) (*Artifact, error) {
	o, err := makeOptions(opts)
	if err != nil {
		return nil, err
	}
	nref, ropts, err := ocifetch.Remote(ctx, ref, o.fetch...)
	if err != nil {
		return nil, err
	}
	ropts = append(ropts, remote.WithJobs(o.jobs))
	puller, err := remote.NewPuller(ropts...)
	if err != nil {
		return nil, err
	}
	ropts = append(ropts, remote.Reuse(puller))
	desc, err := remote.Get(nref, ropts...)
	if err != nil {
		return nil, fmt.Errorf("artifact: get manifest %s: %w", nref, err)
	}
	if desc.Size > maxManifestRead || int64(len(desc.Manifest)) > maxManifestRead {
		return nil, fmt.Errorf("%w: manifest %s of %d bytes", ErrCorrupt, nref, len(desc.Manifest))
	}
	if desc.MediaType != types.OCIManifestSchema1 {
		return nil, fmt.Errorf("%w: %s is a %s", ErrNotArtifact, nref, desc.MediaType)
	}
	var m v1.Manifest
	if err := json.Unmarshal(desc.Manifest, &m); err != nil {
		return nil, fmt.Errorf("%w: manifest %s: %v", ErrCorrupt, nref, err)
	}
	if m.ArtifactType != ArtifactType || m.Config.MediaType != IndexMediaType {
		return nil, fmt.Errorf("%w: %s has artifactType %q and config %q, want %q and %q", ErrNotArtifact, nref, m.ArtifactType, m.Config.MediaType, ArtifactType, IndexMediaType)
	}
	a := &Artifact{Ref: nref.Context().Digest(desc.Digest.String()), Manifest: &m, jobs: o.jobs, puller: puller, ropts: ropts}
	a.Descriptor = v1.Descriptor{MediaType: desc.MediaType, Digest: desc.Digest, Size: desc.Size, ArtifactType: m.ArtifactType, Annotations: m.Annotations}
	if m.Config.Size <= 0 || m.Config.Size > MaxIndexSize {
		return nil, fmt.Errorf("%w: chunk index of %d bytes", ErrCorrupt, m.Config.Size)
	}
	raw, err := a.blob(ctx, m.Config.Digest, m.Config.Size, nil)
	if err != nil {
		return nil, fmt.Errorf("artifact: read chunk index of %s: %w", a.Ref, err)
	}
	if a.Index, err = ParseIndex(raw); err != nil {
		return nil, fmt.Errorf("artifact %s: %w", a.Ref, err)
	}
	if err := checkLayers(&m, a.Index); err != nil {
		return nil, fmt.Errorf("artifact %s: %w", a.Ref, err)
	}
	return a, nil
}

// checkLayers checks that the manifest's layers are the index's blobs, each once, with the
// same sizes (or the empty descriptor alone, for an image without data).
func checkLayers(m *v1.Manifest, x *Index) error {
	want := x.Blobs()
	if len(want) == 0 && len(m.Layers) == 1 && m.Layers[0].MediaType == types.OCIEmptyJSON {
		return nil
	}
	if len(want) != len(m.Layers) {
		return fmt.Errorf("%w: the manifest lists %d layers, the chunk index %d blobs", ErrCorrupt, len(m.Layers), len(want))
	}
	for i, l := range m.Layers {
		if l.MediaType != want[i].MediaType || l.Digest != want[i].Digest || l.Size != want[i].Size {
			return fmt.Errorf("%w: layer %d (%s %s, %d bytes) is not the chunk index's blob %s (%d bytes)", ErrCorrupt, i, l.MediaType, l.Digest, l.Size, want[i].Digest, want[i].Size)
		}
	}
	return nil
}

// blob reads the blob d of size bytes into memory and checks its size and digest. It
// reads into buf when buf holds size+1 bytes.
//
// The digest is checked once, while the bytes arrive: go-containerregistry's blob reader
// (remote's fetcher) hashes what it reads and, at the end of the body, returns an error
// instead of io.EOF when the digest differs. So reaching EOF after exactly size bytes
// means the blob verified; TestBlobDigestOnly fails if that ever stops being true.
func (a *Artifact) blob(ctx context.Context, d v1.Hash, size int64, buf []byte) ([]byte, error) {
	l, err := a.puller.Layer(ctx, a.Ref.Context().Digest(d.String()))
	if err != nil {
		return nil, err
	}
	rc, err := l.Compressed()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	if int64(cap(buf)) < size+1 {
		buf = make([]byte, size+1)
	}
	b := buf[:size+1]
	n, err := io.ReadFull(rc, b) // one byte more than the blob: a longer one is corrupt
	b = b[:n]
	eof := err == io.EOF || err == io.ErrUnexpectedEOF
	switch {
	case err == nil || int64(n) != size && eof:
		return nil, fmt.Errorf("%w: blob %s has %d bytes or more, want %d", ErrCorrupt, d, n, size)
	case eof:
		return b, nil
	case sha256Hash(b) != d:
		// The reader's digest check failed at the end of the body: say so as a corruption.
		return nil, fmt.Errorf("%w: blob %s: %v", ErrCorrupt, d, err)
	}
	return nil, err
}

// FetchStats counts what [Artifact.Fetch] did.
type FetchStats struct {
	// Blobs counts the chunk blobs downloaded and verified, Bytes their compressed size.
	Blobs int
	Bytes int64
	// Written counts the bytes written: the data chunks without their all-zero blocks.
	Written int64
}

// fetchMemory bounds the chunk buffers [Artifact.Fetch] holds at once: each worker holds
// a compressed blob and its decompressed chunk, so a 64 MiB chunk size means fewer
// workers than [WithJobs] asks for.
const fetchMemory = 512 << 20

// Fetch downloads the image's chunk blobs, up to [WithJobs] at once, verifies each (the
// compressed digest and size while it downloads, then the decompressed size and
// SHA-256), and writes them into w at their offsets, leaving out every all-zero 4 KiB
// block: holes and zero blocks are never written, so w must read back zeros where
// nothing is written (a new or truncated file, which stays sparse; a block device that
// zeroes what was not written). A chunk is written only once it has verified.
//
// Chunks are decompressed, verified and written by several goroutines at once (as many
// as the jobs, fewer when the chunk size would make their buffers exceed 512 MiB), so
// w's WriteAt is called concurrently, at disjoint ranges: *os.File (pwrite) allows that.
// Fetch does not set w's size: a file must be truncated to [Artifact.Size] by the caller.
// The first chunk that fails stops the others and is returned as a *[ChunkError]
// (wrapping [ErrCorrupt] when its bytes did not verify); w then holds a partial image.
func (a *Artifact) Fetch(ctx context.Context, w io.WriterAt) (FetchStats, error) {
	var st FetchStats
	byBlob := map[v1.Hash][]Chunk{}
	var order []v1.Hash
	for _, c := range a.Index.Chunks {
		if c.Hole() {
			continue
		}
		if byBlob[c.Digest] == nil {
			order = append(order, c.Digest)
		}
		byBlob[c.Digest] = append(byBlob[c.Digest], c)
	}
	bufSize := maxCompressed(a.Index.ChunkSize) + 1
	workers := int(min(int64(a.jobs), max(1, fetchMemory/(2*bufSize))))
	// As many decoders as cores: a worker past them waits for one, holding its blob.
	decoders := min(workers, runtime.GOMAXPROCS(0))
	dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(decoders), zstd.WithDecoderMaxMemory(uint64(a.Index.ChunkSize)+1), zstd.WithDecoderMaxWindow(uint64(max(a.Index.ChunkSize, zstd.MinWindowSize))))
	if err != nil {
		return st, err
	}
	defer dec.Close()
	var blobs, blobBytes, written atomic.Int64
	bufs := chunkBuffers(bufSize)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(workers)
	for _, d := range order {
		cs := byBlob[d]
		c := cs[0]
		g.Go(func() error {
			fail := func(err error) error { return &ChunkError{Offset: c.Offset, Digest: c.Digest, Err: err} }
			bp, dp := bufs.Get().(*[]byte), bufs.Get().(*[]byte)
			defer bufs.Put(bp)
			defer bufs.Put(dp)
			blob, err := a.blob(gctx, c.Digest, c.Size, *bp)
			if err != nil {
				return fail(err)
			}
			data, err := dec.DecodeAll(blob, (*dp)[:0])
			if err != nil {
				return fail(fmt.Errorf("%w: decompress: %v", ErrCorrupt, err))
			}
			if int64(len(data)) != c.Length {
				return fail(fmt.Errorf("%w: %d bytes decompressed, want %d", ErrCorrupt, len(data), c.Length))
			}
			runs, h := scanChunk(data)
			if h != c.ContentDigest {
				return fail(fmt.Errorf("%w: decompressed content has digest %s, want %s", ErrCorrupt, h, c.ContentDigest))
			}
			blobs.Add(1)
			blobBytes.Add(int64(len(blob)))
			for _, c := range cs {
				for _, r := range runs {
					n, err := w.WriteAt(data[r.off:r.end], c.Offset+int64(r.off))
					written.Add(int64(n))
					if err != nil {
						return &ChunkError{Offset: c.Offset, Digest: c.Digest, Err: fmt.Errorf("write: %w", err)}
					}
				}
			}
			return nil
		})
	}
	err = g.Wait()
	st = FetchStats{Blobs: int(blobs.Load()), Bytes: blobBytes.Load(), Written: written.Load()}
	if err == nil {
		err = ctx.Err()
	}
	return st, err
}

// defaultBuffers holds buffers for a blob or a chunk of the default chunk size across
// fetches: allocating (and zeroing) two chunks' worth of memory per chunk took as long
// as hashing them.
var defaultBuffers = sync.Pool{New: func() any { b := make([]byte, maxCompressed(ChunkSize)+1); return &b }}

// chunkBuffers returns a pool of *[]byte buffers of n bytes.
func chunkBuffers(n int64) *sync.Pool {
	if n == maxCompressed(ChunkSize)+1 {
		return &defaultBuffers
	}
	return &sync.Pool{New: func() any { b := make([]byte, n); return &b }}
}

// zeroBlock is the granularity of the zero blocks Fetch leaves out: the ext4 block.
const zeroBlock = 4096

// zeros is one block of zeros, for comparing: bytes.Equal runs about ten times as fast
// as a loop over words.
var zeros [zeroBlock]byte

// run is the byte range [off, end) of a chunk.
type run struct{ off, end int }

// scanChunk reads data once, a 4 KiB block at a time while it is in the CPU's cache, to
// hash it (SHA-256) and to find its runs of blocks that are not all zeros (counted from
// its start), the ranges to write.
func scanChunk(data []byte) ([]run, v1.Hash) {
	var runs []run
	h := sha256.New()
	for i := 0; i < len(data); i += zeroBlock {
		b := data[i:min(i+zeroBlock, len(data))]
		h.Write(b)
		if bytes.Equal(b, zeros[:len(b)]) {
			continue
		}
		if k := len(runs) - 1; k >= 0 && runs[k].end == i {
			runs[k].end = i + len(b)
		} else {
			runs = append(runs, run{i, i + len(b)})
		}
	}
	return runs, v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(h.Sum(nil))}
}
