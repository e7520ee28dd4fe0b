// Package artifact publishes ext4 images to OCI registries as OCI 1.1 artifacts, chunked
// and deduplicated, and fetches them back: [Push], [Open] and [Artifact.Fetch], [Find].
//
// # Format
//
// An artifact is an OCI image manifest (application/vnd.oci.image.manifest.v1+json)
// whose artifactType is [ArtifactType], "application/vnd.img2ext4.ext4.v1":
//
//   - the image is cut into fixed chunks of [ChunkSize] (2 MiB), the last one shorter;
//   - every chunk that holds a non-zero byte is compressed with zstd (one frame, the
//     default level) into a blob addressed by its SHA-256, a layer of media type
//     [ChunkMediaType]; a blob is listed once however many chunks it holds;
//   - chunks of zeros are holes: recorded in the index, never uploaded, never written
//     when pulled (the output stays sparse);
//   - the config blob, of media type [IndexMediaType], is the chunk index ([Index]):
//     the chunk size, the image size and, in order, each extent's offset and length,
//     and for data chunks the blob's digest and compressed size and the SHA-256 of the
//     uncompressed bytes;
//   - subject is the descriptor of the source image's manifest (the platform's
//     manifest, not an index), so that the registry's referrers API, or the OCI 1.1
//     fallback tag "sha256-<hex>" where the registry has none, links the source image
//     to its converted forms;
//   - annotations carry the source reference and digest, the platform, the store key,
//     the image and filesystem sizes, the filesystem UUID and the dm-verity root hash
//     and salt (the Annotation* constants).
//
// # Why 2 MiB chunks
//
// The chunk is the unit of deduplication and of transfer. Smaller chunks deduplicate
// more finely (a changed file costs less) but multiply blobs: each is a HEAD, an upload
// and a manifest entry, and registries cap manifests at about 4 MiB ([MaxManifestSize]),
// so 2 MiB chunks allow about 48 GiB of non-zero data, 512 KiB ones only 12 GiB. Larger
// chunks make a small change re-upload more. 2 MiB is where the systems that do this at
// scale settled: e2b stores rootfs builds as compressed 2 MiB frames, AWS Lambda cuts
// its flattened ext4 images into chunks of a few MiB and deduplicates them (most new
// uploads add no new chunk), and it is the alignment img2ext4 gives image sizes (for
// virtio-pmem) and x86's huge page. It is recorded in every index, so a reader takes
// any power of two from 4 KiB to [MaxChunkSize].
//
// Chunks are compressed with github.com/klauspost/compress/zstd; an identical chunk
// compresses to an identical blob with the same encoder version and level, which is what
// lets a second push skip it (HEAD first). A different encoder version may produce other
// bytes for the same chunk, which then upload again: the index's content digest, not
// the blob's, says what the bytes are.
//
// # Pulling
//
// [Open] reads the manifest and the index (verified against its digest, validated by
// [ParseIndex]); [Artifact.Fetch] downloads the blobs in parallel, each verified twice:
// its compressed bytes against the digest and size in the index (hashed once, as they
// arrive), its decompressed bytes against the chunk's length and content digest (hashed
// once, in the same pass that finds the all-zero blocks). Chunks are decompressed,
// verified and written at their offsets by several goroutines at once; a chunk is written
// only once verified. A chunk that fails is a *[ChunkError] wrapping [ErrCorrupt]; the
// caller publishes nothing (the root package's Pull writes into a temporary file renamed
// into place only when every chunk verified).
//
// # Transport
//
// Registry access goes through go-containerregistry's remote package with the options of
// [ocifetch.Remote]: the same plain-HTTP rules (loopback hosts, "http://" references,
// WithInsecure), CAs, retries and credentials (keychains, basic auth) as pulling images.
// Writing the fallback tag is go-containerregistry's: when the registry answers the
// referrers endpoint with 404, the manifest put reads the "sha256-<hex>" index, adds the
// artifact and puts it back. That read-modify-write is not atomic: two pushes that refer
// to the same subject at the same moment may lose one entry of the fallback index (the
// artifacts themselves stay).
//
// The package knows nothing of how images are converted; it refuses an image whose
// superblock is not ext4's ([ErrNotArtifact]).
package artifact
