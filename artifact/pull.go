package artifact

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
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
	switch {
	case err == nil || int64(n) != size && (err == io.EOF || err == io.ErrUnexpectedEOF):
		return nil, fmt.Errorf("%w: blob %s has %d bytes or more, want %d", ErrCorrupt, d, n, size)
	case err != io.EOF && err != io.ErrUnexpectedEOF && sha256Hash(b) != d:
		// ggcr's reader checks the digest at EOF: say so as a corruption.
		return nil, fmt.Errorf("%w: blob %s: %v", ErrCorrupt, d, err)
	case err != io.EOF && err != io.ErrUnexpectedEOF:
		return nil, err
	case sha256Hash(b) != d:
		return nil, fmt.Errorf("%w: blob %s has digest %s", ErrCorrupt, d, sha256Hash(b))
	}
	return b, nil
}

// FetchStats counts what [Artifact.Fetch] did.
type FetchStats struct {
	// Blobs counts the chunk blobs downloaded and verified, Bytes their compressed size.
	Blobs int
	Bytes int64
	// Written counts the bytes written: the data chunks without their all-zero blocks.
	Written int64
}

// Fetch downloads the image's chunk blobs, up to [WithJobs] at once, verifies each (the
// compressed digest and size, then the decompressed size and SHA-256), and writes them
// into w at their offsets, leaving out every all-zero 4 KiB block: holes and zero blocks
// are never written, so w must read back zeros where nothing is written (a new or
// truncated file, which stays sparse; a block device that zeroes what was not written).
// Chunks are verified in parallel, but w's WriteAt is called by one goroutine at a time.
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
	dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(a.jobs), zstd.WithDecoderMaxMemory(uint64(a.Index.ChunkSize)+1), zstd.WithDecoderMaxWindow(uint64(max(a.Index.ChunkSize, zstd.MinWindowSize))))
	if err != nil {
		return st, err
	}
	defer dec.Close()
	var blobs, blobBytes, written atomic.Int64
	var wmu sync.Mutex // one WriteAt at a time
	// Buffers for a compressed blob or a chunk, reused: allocating (and zeroing) two
	// chunks' worth of memory per chunk took as long as hashing them.
	bufSize := maxCompressed(a.Index.ChunkSize) + 1
	bufs := sync.Pool{New: func() any { b := make([]byte, bufSize); return &b }}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(a.jobs)
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
			if h := sha256Hash(data); h != c.ContentDigest {
				return fail(fmt.Errorf("%w: decompressed content has digest %s, want %s", ErrCorrupt, h, c.ContentDigest))
			}
			blobs.Add(1)
			blobBytes.Add(int64(len(blob)))
			wmu.Lock()
			defer wmu.Unlock()
			for _, c := range cs {
				n, err := writeNonZero(w, data, c.Offset)
				written.Add(n)
				if err != nil {
					return &ChunkError{Offset: c.Offset, Digest: c.Digest, Err: fmt.Errorf("write: %w", err)}
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

// zeroBlock is the granularity of the zero blocks Fetch leaves out: the ext4 block.
const zeroBlock = 4096

// writeNonZero writes data at off, leaving out its all-zero 4 KiB blocks (counted from
// off), one WriteAt for each run of other blocks. It returns the bytes written.
func writeNonZero(w io.WriterAt, data []byte, off int64) (int64, error) {
	var n int64
	start := -1 // of the current run of non-zero blocks
	for i := 0; ; i += zeroBlock {
		end := min(i+zeroBlock, len(data))
		if i < len(data) && !allZero(data[i:end]) {
			if start < 0 {
				start = i
			}
			continue
		}
		if start >= 0 {
			k, err := w.WriteAt(data[start:min(i, len(data))], off+int64(start))
			n += int64(k)
			if err != nil {
				return n, err
			}
			start = -1
		}
		if i >= len(data) {
			return n, nil
		}
	}
}
