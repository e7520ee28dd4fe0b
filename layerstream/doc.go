// Package layerstream turns the blob of an image layer into its verified, uncompressed tar
// stream. It is the one place in img2ext4 that decompresses.
//
// [Open] reads a layer's compressed blob, tells gzip, zstd or a plain tar from the first
// bytes ([Sniff]; the media type only refuses compressions this package cannot decode,
// [CheckMediaType]), decompresses it a few MiB ahead of the reader in a goroutine of its
// own ([WithReadAhead]), hashes the uncompressed bytes, and at their end drains the
// compressed blob and checks the hash against the layer's DiffID: a [Stream] returns
// io.EOF only for content that matches, a [*DiffIDError] otherwise. A [Pipeline] does the
// same for all the layers of an image at once, read in order while they decode: as many
// decoders as there are cores, one taking the layers in order and the others the largest
// layers not started, the DiffID hashed as the bytes come, the bytes waiting in memory and
// then in unlinked temporary files within a budget ([WithJobs], [WithMemory], [WithDisk]).
// Every stream honours its context, caps the uncompressed bytes ([WithLimit], a
// [*LimitError] beyond), and reports progress in uncompressed bytes ([WithProgress]).
//
// [Decompress] is the unverified form, for blobs that are not layers of a known image
// (compressed archives, a layer's Uncompressed method).
//
// The package knows nothing of registries, tar members or sinks: ocifetch hands it
// verified blobs, and layerapply reads the streams it returns.
package layerstream
