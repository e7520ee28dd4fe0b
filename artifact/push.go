package artifact

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/img2ext4/img2ext4/ocifetch"
	"github.com/img2ext4/img2ext4/progress"
	"github.com/klauspost/compress/zstd"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"
)

// MaxManifestSize is the largest manifest [Push] writes, 4 MiB: the limit of Docker
// Hub, distribution and most registries. With one layer descriptor (about 170 bytes)
// per distinct 2 MiB chunk it holds about 24,000 chunks: some 48 GiB of non-zero data.
const MaxManifestSize = 4 << 20

// Pushed describes an artifact [Push] wrote.
type Pushed struct {
	// Ref is the manifest's repository and digest ("host/repo@sha256:…").
	Ref name.Digest
	// Tag is the tag it was pushed to, "" when pushed by digest only.
	Tag string
	// Descriptor is the manifest's descriptor, with its artifactType and annotations,
	// as a referrers list shows it.
	Descriptor v1.Descriptor
	// Index is the chunk index stored in the config blob.
	Index *Index
	// Chunks counts the data chunks and Holes the all-zero chunks (never uploaded).
	Chunks, Holes int
	// Blobs counts the distinct chunk blobs; Uploaded those the registry did not have
	// yet, UploadedBytes their compressed bytes. The others were found with HEAD and
	// skipped.
	Blobs, Uploaded int
	UploadedBytes   int64
	// Referrers says how the subject's referrers list the artifact: [ReferrersAPI],
	// [ReferrersTag], or "" when it has no subject.
	Referrers string
}

// How a registry lists an artifact among its subject's referrers ([Pushed.Referrers]).
const (
	// ReferrersAPI is the registry's referrers API (OCI distribution 1.1).
	ReferrersAPI = "api"
	// ReferrersTag is the OCI 1.1 fallback tag "sha256-<hex>" of the subject, an index
	// that Push updated, for registries without the API.
	ReferrersTag = "tag"
)

// PushFile pushes the ext4 image in the file at path as an artifact to ref; see [Push].
// Holes of a sparse file are found with SEEK_DATA and not read.
func PushFile(ctx context.Context, path, ref string, opts ...Option) (*Pushed, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("push %s: %w", path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("push %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("push %s: not a regular file", path)
	}
	p, err := Push(ctx, f, fi.Size(), ref, opts...)
	if err != nil {
		return nil, fmt.Errorf("push %s: %w", path, err)
	}
	return p, nil
}

// Push publishes the size bytes of the ext4 image r to the registry repository of ref,
// under ref's tag, or by digest only when ref names none (the artifact is then reached
// through its subject's referrers or its digest). The manifest is an OCI 1.1 image
// manifest of artifactType [ArtifactType]: the image is cut into [ChunkSize] chunks,
// each compressed with zstd into a content-addressed blob (a layer of media type
// [ChunkMediaType]); chunks of zeros are recorded as holes and not uploaded; the [Index]
// is the config blob. A blob the registry already has (HEAD) is not uploaded again, so
// pushing a new version of an image uploads only the chunks that changed. With
// [WithSubject], the manifest's subject links it to its source image: the registry's
// referrers API lists it, or, where the registry has none, the OCI 1.1 fallback tag
// ("sha256-<hex>" of the subject) is updated to an index that lists it.
//
// The manifest's annotations hold the image size, the filesystem's size and UUID read
// from its superblock, and, when a dm-verity hash area follows the filesystem, its root
// hash and salt, once the tree has been recomputed and found equal; plus those of
// [WithAnnotations]. An image that is not ext4 wraps [ErrNotArtifact]; one with more
// distinct chunks than a [MaxManifestSize] manifest lists is refused before any upload.
func Push(ctx context.Context, r io.ReaderAt, size int64, ref string, opts ...Option) (*Pushed, error) {
	o, err := makeOptions(opts)
	if err != nil {
		return nil, err
	}
	if size > MaxImageSize {
		return nil, fmt.Errorf("artifact: image of %d bytes, more than %d", size, int64(MaxImageSize))
	}
	nref, ropts, err := ocifetch.Remote(ctx, ref, o.fetch...)
	if err != nil {
		return nil, err
	}
	tag := ""
	switch t := nref.(type) {
	case name.Tag:
		if explicitTag(ref) {
			tag = t.TagStr()
		}
	case name.Digest:
		return nil, fmt.Errorf("artifact: push to %s: name a repository and optionally a tag, not a digest", ref)
	}
	info, err := readSuperblock(r, size)
	if err != nil {
		return nil, err
	}
	if _, ok := o.annotations[AnnotationVerityRootHash]; !ok {
		if err := readVerity(ctx, r, size, info); err != nil {
			return nil, err
		}
	}
	repo := nref.Context()
	pusher, err := remote.NewPusher(append(ropts, remote.WithJobs(o.jobs))...)
	if err != nil {
		return nil, err
	}
	p := &Pushed{}
	var mu sync.Mutex // guards p's counts and done, and serializes progress
	var done int64    // bytes of the image handled
	start := time.Now()
	report := func(complete bool) {
		if o.progress == nil {
			return
		}
		e := progress.Event{Phase: progress.PhaseUpload, Layer: -1, Done: done, Total: size, Complete: complete, Elapsed: time.Since(start)}
		if s := e.Elapsed.Seconds(); s > 0 {
			e.BytesPerSec = float64(done) / s
		}
		o.progress(e)
	}
	mu.Lock()
	report(false)
	mu.Unlock()
	x, err := pushChunks(ctx, r, size, o.jobs, func(ctx context.Context, c Chunk, blob []byte) error {
		l := &blobLayer{digest: c.Digest, b: blob, mt: ChunkMediaType}
		if err := pusher.Upload(ctx, repo, l); err != nil {
			return fmt.Errorf("upload chunk %s at offset %d to %s: %w", c.Digest, c.Offset, repo, err)
		}
		mu.Lock()
		defer mu.Unlock()
		if l.read.Load() {
			p.Uploaded++
			p.UploadedBytes += int64(len(blob))
		}
		done += c.Length
		report(false)
		return nil
	}, func(c Chunk) {
		mu.Lock()
		done += c.Length
		report(false)
		mu.Unlock()
	})
	if err != nil {
		return nil, err
	}
	p.Index = x
	for _, c := range x.Chunks {
		if c.Hole() {
			p.Holes += int((c.Length + ChunkSize - 1) / ChunkSize)
		} else {
			p.Chunks++
		}
	}
	raw, err := x.Marshal()
	if err != nil {
		return nil, err
	}
	cfg := &blobLayer{digest: sha256Hash(raw), b: raw, mt: IndexMediaType}
	if err := pusher.Upload(ctx, repo, cfg); err != nil {
		return nil, fmt.Errorf("upload chunk index to %s: %w", repo, err)
	}
	m := v1.Manifest{
		SchemaVersion: 2,
		MediaType:     types.OCIManifestSchema1,
		ArtifactType:  ArtifactType,
		Config:        v1.Descriptor{MediaType: IndexMediaType, Digest: cfg.digest, Size: int64(len(raw))},
		Layers:        x.Blobs(),
		Subject:       o.subject,
		Annotations:   maps.Clone(o.annotations),
	}
	p.Blobs = len(m.Layers)
	if len(m.Layers) == 0 {
		// An image of zeros only: OCI 1.1 asks for at least one layer, the empty descriptor.
		empty := &blobLayer{digest: sha256Hash([]byte("{}")), b: []byte("{}"), mt: types.OCIEmptyJSON}
		if err := pusher.Upload(ctx, repo, empty); err != nil {
			return nil, fmt.Errorf("upload empty descriptor to %s: %w", repo, err)
		}
		m.Layers = []v1.Descriptor{{MediaType: types.OCIEmptyJSON, Digest: empty.digest, Size: 2, Data: []byte("{}")}}
	}
	m.Annotations[AnnotationImageSize] = strconv.FormatInt(size, 10)
	m.Annotations[AnnotationFilesystemSize] = strconv.FormatInt(info.fsSize, 10)
	m.Annotations[AnnotationFilesystemUUID] = info.uuid
	if info.rootHash != "" {
		m.Annotations[AnnotationVerityRootHash] = info.rootHash
		m.Annotations[AnnotationVeritySalt] = info.salt
	}
	mraw, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	if len(mraw) > MaxManifestSize {
		return nil, fmt.Errorf("artifact: the manifest of %d chunk blobs is %d bytes, more than registries take (%d)", len(m.Layers), len(mraw), MaxManifestSize)
	}
	desc := v1.Descriptor{MediaType: types.OCIManifestSchema1, Digest: sha256Hash(mraw), Size: int64(len(mraw)), ArtifactType: ArtifactType, Annotations: m.Annotations}
	p.Ref = repo.Digest(desc.Digest.String())
	p.Descriptor, p.Tag = desc, tag
	var target name.Reference = p.Ref
	if tag != "" {
		target = repo.Tag(tag)
	}
	if err := pusher.Put(ctx, target, rawManifest{raw: mraw, mt: types.OCIManifestSchema1}); err != nil {
		return nil, fmt.Errorf("put artifact manifest %s: %w", target, err)
	}
	if o.subject != nil {
		// The put asked the registry the same: with the fallback tag turned off, a
		// referrers query fails where the registry has no referrers API.
		p.Referrers = ReferrersAPI
		if _, err := remote.Referrers(repo.Digest(o.subject.Digest.String()), append(ropts, remote.WithReferrersTagFallback(false))...); err != nil {
			p.Referrers = ReferrersTag
		}
	}
	mu.Lock()
	report(true)
	mu.Unlock()
	return p, nil
}

// explicitTag reports whether a registry reference names a tag itself, rather than
// getting "latest" by default.
func explicitTag(ref string) bool {
	i := strings.LastIndexAny(ref, ":/")
	return i >= 0 && ref[i] == ':' && !strings.Contains(ref, "@")
}

// pushChunks cuts the image into chunks, compresses each data chunk, hands it to upload
// (from up to jobs goroutines at once) and returns the index. A chunk of zeros is handed
// to zero instead (from any of those goroutines). Chunks wholly inside a hole of a sparse
// file are not read.
func pushChunks(ctx context.Context, r io.ReaderAt, size int64, jobs int, upload func(ctx context.Context, c Chunk, blob []byte) error, zero func(c Chunk)) (*Index, error) {
	n := (size + ChunkSize - 1) / ChunkSize
	chunks := make([]Chunk, n)
	data := dataMap(r, size)
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(jobs), zstd.WithEncoderLevel(zstd.SpeedDefault))
	if err != nil {
		return nil, err
	}
	defer enc.Close()
	bufs := sync.Pool{New: func() any { b := make([]byte, ChunkSize); return &b }}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(jobs)
	for i := range n {
		off := i * ChunkSize
		length := min(ChunkSize, size-off)
		chunks[i] = Chunk{Offset: off, Length: length}
		if !data(off, length) {
			zero(chunks[i])
			continue
		}
		if gctx.Err() != nil {
			break
		}
		g.Go(func() error {
			bp := bufs.Get().(*[]byte)
			defer bufs.Put(bp)
			b := (*bp)[:length]
			if k, err := r.ReadAt(b, off); k < len(b) {
				if err == nil || err == io.EOF {
					err = io.ErrUnexpectedEOF
				}
				return fmt.Errorf("read image at %d: %w", off+int64(k), err)
			}
			if allZero(b) {
				zero(chunks[i])
				return nil
			}
			blob := enc.EncodeAll(b, make([]byte, 0, len(b)/2))
			c := Chunk{Offset: off, Length: length, Digest: sha256Hash(blob), Size: int64(len(blob)), ContentDigest: sha256Hash(b)}
			if err := upload(gctx, c, blob); err != nil {
				return err
			}
			chunks[i] = c
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	x := &Index{ChunkSize: ChunkSize, Size: size, Compression: compressionZstd}
	for _, c := range chunks {
		if last := len(x.Chunks) - 1; c.Hole() && last >= 0 && x.Chunks[last].Hole() {
			x.Chunks[last].Length += c.Length
			continue
		}
		x.Chunks = append(x.Chunks, c)
	}
	return x, nil
}

// dataMap returns a function telling whether [off, off+n) of r may hold data: for a
// file, whether SEEK_DATA finds data before its end; for anything else, always.
func dataMap(r io.ReaderAt, size int64) func(off, n int64) bool {
	f, ok := r.(*os.File)
	if !ok {
		return func(int64, int64) bool { return true }
	}
	fd := int(f.Fd())
	return func(off, n int64) bool {
		next, err := unix.Seek(fd, off, unix.SEEK_DATA)
		switch {
		case errors.Is(err, unix.ENXIO): // no data from off to the end
			return false
		case err != nil: // no SEEK_DATA here: read it
			return true
		}
		return next < off+n
	}
}

// allZero reports whether b holds only zero bytes.
func allZero(b []byte) bool {
	for len(b) > 0 {
		n := min(len(b), zeroBlock)
		if !bytes.Equal(b[:n], zeros[:n]) {
			return false
		}
		b = b[n:]
	}
	return true
}

func sha256Hash(b []byte) v1.Hash {
	s := sha256.Sum256(b)
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(s[:])}
}

// blobLayer is a blob in memory with a known digest, uploaded through remote.Pusher. It
// records whether its bytes were read, that is, whether the registry lacked it.
type blobLayer struct {
	digest v1.Hash
	b      []byte
	mt     types.MediaType
	read   atomic.Bool
}

var _ v1.Layer = (*blobLayer)(nil)

func (l *blobLayer) Digest() (v1.Hash, error) { return l.digest, nil }
func (l *blobLayer) DiffID() (v1.Hash, error) { return l.digest, nil }
func (l *blobLayer) Size() (int64, error)     { return int64(len(l.b)), nil }
func (l *blobLayer) MediaType() (types.MediaType, error) {
	return l.mt, nil
}
func (l *blobLayer) Compressed() (io.ReadCloser, error) {
	l.read.Store(true)
	return io.NopCloser(bytes.NewReader(l.b)), nil
}
func (l *blobLayer) Uncompressed() (io.ReadCloser, error) { return l.Compressed() }

// rawManifest is a manifest to put as it is.
type rawManifest struct {
	raw []byte
	mt  types.MediaType
}

func (m rawManifest) RawManifest() ([]byte, error)        { return m.raw, nil }
func (m rawManifest) MediaType() (types.MediaType, error) { return m.mt, nil }
