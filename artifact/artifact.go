package artifact

import (
	"errors"
	"fmt"
	"maps"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/img2ext4/img2ext4/ocifetch"
	"github.com/img2ext4/img2ext4/progress"
)

// Media types of the artifact: the manifest's artifactType, its config (the chunk index)
// and its layers (the compressed chunks).
const (
	// ArtifactType is the artifactType of the manifest of an ext4 image artifact, and
	// the filter a referrers query for such artifacts uses.
	ArtifactType = "application/vnd.img2ext4.ext4.v1"
	// IndexMediaType is the media type of the config blob: the chunk index, JSON as
	// [Index] marshals it.
	IndexMediaType = "application/vnd.img2ext4.ext4.index.v1+json"
	// ChunkMediaType is the media type of every layer: one chunk of the image,
	// compressed with zstd.
	ChunkMediaType = "application/vnd.img2ext4.ext4.chunk.v1+zstd"
)

// ChunkSize is the size of the chunks [Push] cuts an image into, 2 MiB; see the
// package documentation for why.
const ChunkSize = 2 << 20

// Annotation keys of the artifact manifest (and so of its descriptor in a referrers
// list). Values are strings; sizes are decimal byte counts.
const (
	// AnnotationSourceRef is the reference the image was converted from, as given.
	AnnotationSourceRef = "io.github.img2ext4.source.ref"
	// AnnotationSourceDigest is the digest of the source image manifest converted (the
	// platform's manifest, not an index): the subject's digest.
	AnnotationSourceDigest = "io.github.img2ext4.source.digest"
	// AnnotationPlatform is the platform of the source image, os/arch[/variant].
	AnnotationPlatform = "io.github.img2ext4.platform"
	// AnnotationStoreKey is the key of the artifact store for the conversion that made
	// the image: equal keys mean byte-identical images. --cache-from looks for it.
	AnnotationStoreKey = "io.github.img2ext4.store.key"
	// AnnotationImageSize is the size of the image file in bytes: the filesystem, plus
	// a dm-verity hash tree when one is appended.
	AnnotationImageSize = "io.github.img2ext4.image.size"
	// AnnotationFilesystemSize is the size of the ext4 filesystem in bytes, as its
	// superblock says (block count times block size).
	AnnotationFilesystemSize = "io.github.img2ext4.fs.size"
	// AnnotationFilesystemUUID is the UUID of the ext4 filesystem, as its superblock says.
	AnnotationFilesystemUUID = "io.github.img2ext4.fs.uuid"
	// AnnotationVerityRootHash is the dm-verity root hash (hexadecimal) of the
	// filesystem, when the image was made with a hash tree.
	AnnotationVerityRootHash = "io.github.img2ext4.verity.root-hash"
	// AnnotationVeritySalt is the dm-verity salt (hexadecimal, "-" for none), beside
	// the root hash.
	AnnotationVeritySalt = "io.github.img2ext4.verity.salt"
	// AnnotationReport is what the conversion that made the image reported besides the
	// image, as JSON (the layers applied, the warnings, the CA certificate report), so
	// that a cache hit reports the same; the root package writes and reads it.
	AnnotationReport = "io.github.img2ext4.report"
)

// DefaultJobs is how many chunks [Push] and [Artifact.Fetch] handle at once unless
// [WithJobs] says otherwise.
const DefaultJobs = 8

// ErrNotArtifact reports a manifest that is not an ext4 image artifact, or an image file
// that is not an ext4 filesystem.
var ErrNotArtifact = errors.New("artifact: not an ext4 image artifact")

// ErrCorrupt reports an index, a chunk or a manifest whose bytes are not what they claim:
// a digest or size mismatch, an index that does not hold together.
var ErrCorrupt = errors.New("artifact: corrupt")

// ChunkError reports a chunk that failed to fetch or verify.
type ChunkError struct {
	// Offset is where the chunk starts in the image, in bytes.
	Offset int64
	// Digest is the digest of the chunk's compressed blob.
	Digest v1.Hash
	// Err is what went wrong; it wraps [ErrCorrupt] when the bytes did not verify.
	Err error
}

func (e *ChunkError) Error() string {
	return fmt.Sprintf("artifact: chunk %s at offset %d: %v", e.Digest, e.Offset, e.Err)
}

// Unwrap returns the underlying error.
func (e *ChunkError) Unwrap() error { return e.Err }

type options struct {
	fetch       []ocifetch.Option
	jobs        int
	subject     *v1.Descriptor
	annotations map[string]string
	progress    progress.Func
}

// Option configures [Push], [Open] and [Find].
type Option func(*options) error

func makeOptions(opts []Option) (*options, error) {
	o := &options{jobs: DefaultJobs, annotations: map[string]string{}}
	for _, opt := range opts {
		if err := opt(o); err != nil {
			return nil, err
		}
	}
	return o, nil
}

// WithFetchOptions passes options to [ocifetch.Remote]: credentials, registry CAs,
// plain HTTP, retries. Their jobs and platform do not apply. The default is none:
// ocifetch's defaults, the default keychain among them.
func WithFetchOptions(opts ...ocifetch.Option) Option {
	return func(o *options) error { o.fetch = append(o.fetch, opts...); return nil }
}

// WithJobs sets how many chunks are compressed and uploaded, or downloaded and
// verified, at once, from 1 to 64. The default is [DefaultJobs].
func WithJobs(n int) Option {
	return func(o *options) error {
		if n < 1 || n > 64 {
			return fmt.Errorf("artifact: jobs %d out of range 1..64", n)
		}
		o.jobs = n
		return nil
	}
}

// WithProgress makes [Push] report its progress to fn: image-level events (Layer -1) of
// [progress.PhaseUpload] whose Done counts the bytes of the image handled so far (chunks
// uploaded, found in the registry already, or all zeros) out of Total, the image's size,
// the last one Complete once the manifest is in place. Calls never overlap; they come
// from the goroutines doing the work, so fn must return quickly. The default is none.
func WithProgress(fn progress.Func) Option {
	return func(o *options) error { o.progress = fn; return nil }
}

// WithSubject makes [Push] set the manifest's subject to desc, the descriptor of the
// source image manifest, so that the registry lists the artifact among that manifest's
// referrers. desc needs a media type, digest and size. The default is no subject.
func WithSubject(desc v1.Descriptor) Option {
	return func(o *options) error {
		if desc.MediaType == "" || desc.Digest.Hex == "" || desc.Size <= 0 {
			return fmt.Errorf("artifact: subject %s needs a media type, a digest and a size", desc.Digest)
		}
		d := v1.Descriptor{MediaType: desc.MediaType, Digest: desc.Digest, Size: desc.Size}
		o.subject = &d
		return nil
	}
}

// WithAnnotations adds annotations to the manifest [Push] writes, such as
// [AnnotationSourceRef], [AnnotationStoreKey] or [AnnotationVerityRootHash]. Push sets
// [AnnotationImageSize], [AnnotationFilesystemSize] and [AnnotationFilesystemUUID]
// itself, from the image. The default is none.
func WithAnnotations(a map[string]string) Option {
	return func(o *options) error {
		for k := range a {
			if k == "" {
				return errors.New("artifact: empty annotation key")
			}
		}
		maps.Copy(o.annotations, a)
		return nil
	}
}
