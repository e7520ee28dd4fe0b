// Package ocifetch resolves a container image reference to a single-platform
// [v1.Image] and downloads its layer blobs, verifying every byte it hands out.
//
// [Image] understands skopeo-style references:
//
//   - a registry reference: "alpine", "docker.io/library/alpine:3.20",
//     "host:5000/repo@sha256:…", optionally prefixed with "docker://"; an
//     "http://host:port/repo:tag" prefix selects a plain-HTTP registry;
//   - "oci:DIR[:TAG]", an OCI image layout directory;
//   - "oci-archive:FILE[:TAG]", a tar of an OCI image layout;
//   - "docker-archive:FILE[:REF]", the output of "docker save", in both the
//     legacy manifest.json form and the newer OCI-layout form; REF is one of
//     its RepoTags or "@N" for its N-th image;
//   - "docker-daemon:IMAGE", an image in a Docker-compatible engine (Docker,
//     or podman's "podman system service"), read over the engine's API
//     socket ([WithEngineHost], DOCKER_HOST): IMAGE is a name with an
//     optional tag, NAME@DIGEST, or an image ID "sha256:…". The export
//     streams in once; as Docker and podman write the manifest after the
//     layers, it is spooled to one unlinked temporary file and read from
//     there in place (see [WithTempDir]) until [Release] closes it or the
//     image is garbage collected; [WithProgress] receives the bytes
//     read so far as [progress.PhaseResolve] events. A stopped engine gives
//     [ErrEngineUnreachable]. No program is run;
//   - a local path without a transport ("/srv/images/app", "./hello-oci:v1",
//     "../save.tar.gz"): an OCI layout directory, or an archive whose content
//     tells OCI from docker. A bare name that is a valid registry reference
//     ("hello-oci") stays one, unless a local image of that name exists: that
//     is refused as ambiguous, naming both spellings.
//
// Archives are read in place by indexing their tar headers; a gzip- or
// zstd-compressed archive is first decompressed to an unlinked temporary file.
//
// An image index is resolved to the manifest matching the wanted platform
// ([WithPlatform]); a single-platform image whose config names another
// platform is refused unless [WithAllowPlatformMismatch] is set. Docker schema 1
// manifests are refused with [ErrSchema1], and artifacts whose config or layers
// have unknown media types with [ErrUnsupportedMediaType].
//
// Registry access uses plain HTTP only for loopback hosts, for references
// written with "http://", or with [WithInsecure]. Credentials come from
// [WithBasicAuth], [WithKeychain] or, by default, podman's auth.json
// (REGISTRY_AUTH_FILE, then ${XDG_RUNTIME_DIR}/containers/auth.json, then
// ${XDG_CONFIG_HOME}/containers/auth.json) followed by the Docker config
// (DOCKER_CONFIG, ~/.docker/config.json and its credential helpers).
// Passwords and tokens never appear in errors.
//
// Every blob is checked against the size and digest its descriptor states
// while it is read: a mismatch gives a [*DigestError] or a [*SizeError] at the
// end of the stream, so readers must read to EOF and check the error.
// [Prefetch] downloads all layer blobs of an image in parallel to temporary
// files, reporting [progress.PhaseDownload] events ([progress.PhaseLocal] for
// a blob read in place), and hands the layers
// back in order for the caller to apply one after the other; a layer is
// read while its blob downloads, from the file as it grows, and its reader
// ends with io.EOF only once the whole blob matched its digest. Blobs of local
// sources are never copied: layouts and uncompressed archives are read in
// place (an archive's blobs as sections of the archive file), and verified
// as they are read.
//
// [WithBlobCache] keeps the compressed blobs fetched from registries (layers
// and configs) by digest in a [BlobCache] directory shared by processes:
// a blob found there is verified and used instead of downloaded, a missing
// one is downloaded once (other processes wait for it) and renamed into
// place when verified. [BlobCache.Prune] removes blobs by least recent use.
//
// Every registry request — ping, token, manifest, config and blob — goes
// through one retry policy: temporary statuses (408, 429, 500, 502, 503,
// 504), connection resets and refusals, timeouts, stalls, bodies cut short
// and lengths that differ from the descriptor are retried with exponential
// backoff and jitter, honouring Retry-After, within [WithRetries] attempts in
// a row and [WithRetryMaxTime]. A cut blob download resumes with a Range
// request from the bytes already received, all of which the digest check at
// the end still covers. Refused credentials, missing objects and
// verification failures fail at once, saying they were not retried; an
// error after retries is a [*RetryError] listing the attempts, and each
// retry is reported to [WithProgress] (the Retries and Retry fields of
// [progress.Event]).
//
// Errors name the operation and object ("fetch layer sha256:…: …"); callers
// branch on the sentinels ([ErrNotFound], [ErrUnauthorized], [ErrPlatform],
// [ErrDigestMismatch], [ErrTruncated], …) with [errors.Is] and read the
// typed errors ([*DigestError], [*SizeError], [*PlatformError]) with
// [errors.As]. Manifests (8 MiB), configs (64 MiB), index nesting (4),
// archive entries (2^20) and the decompressed size of compressed archives
// (1 TiB) are capped, with [ErrLimit] beyond.
//
// The package stops at verified compressed blobs. Its layers' Uncompressed
// methods decompress gzip and zstd for convenience without checking the
// DiffID; applying layers, and checking DiffIDs while doing so, is the job of
// package layerapply.
package ocifetch
