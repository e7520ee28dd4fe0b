package ocifetch

import (
	"errors"
	"fmt"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Sentinel errors. Callers branch on them with [errors.Is].
var (
	// ErrSchema1 reports a Docker schema 1 manifest, which is deprecated and not supported.
	ErrSchema1 = errors.New("ocifetch: docker schema 1 manifests are not supported; re-push the image with a current tool")
	// ErrDigestMismatch reports a blob or manifest whose content does not match its digest.
	ErrDigestMismatch = errors.New("ocifetch: digest mismatch")
	// ErrSizeMismatch reports a blob longer than its descriptor says.
	ErrSizeMismatch = errors.New("ocifetch: size mismatch")
	// ErrTruncated reports a blob that ended before its descriptor's size.
	ErrTruncated = errors.New("ocifetch: blob truncated")
	// ErrPlatform reports that no image matches the wanted platform.
	ErrPlatform = errors.New("ocifetch: platform not available")
	// ErrUnsupportedMediaType reports a manifest, config or layer of a media type this package does not handle.
	ErrUnsupportedMediaType = errors.New("ocifetch: unsupported media type")
	// ErrUnsupportedTransport reports a reference with a transport prefix this package does not handle.
	ErrUnsupportedTransport = errors.New("ocifetch: unsupported transport")
	// ErrNotFound reports a reference, tag or blob that does not exist in its source.
	ErrNotFound = errors.New("ocifetch: not found")
	// ErrUnauthorized reports that the registry refused the credentials, or
	// their absence, with status 401 or 403.
	ErrUnauthorized = errors.New("ocifetch: unauthorized")
	// ErrLimit reports a manifest, config or archive exceeding a size cap.
	ErrLimit = errors.New("ocifetch: limit exceeded")
	// ErrDescriptorMismatch reports a descriptor that disagrees with the
	// document it describes, or that cannot describe one (no digest, a negative size).
	ErrDescriptorMismatch = errors.New("ocifetch: descriptor does not match its document")
	// ErrClosed reports use of a [Prefetcher] after [Prefetcher.Close].
	ErrClosed = errors.New("ocifetch: prefetcher closed")
)

// DigestError reports that a blob's content hashes to Got instead of Digest.
// It wraps [ErrDigestMismatch].
type DigestError struct {
	// Digest is the digest the descriptor promised.
	Digest v1.Hash
	// Got is the digest of the bytes actually read.
	Got v1.Hash
}

// Error implements error.
func (e *DigestError) Error() string {
	return fmt.Sprintf("ocifetch: digest mismatch: want %s, got %s", e.Digest, e.Got)
}

// Unwrap returns [ErrDigestMismatch].
func (e *DigestError) Unwrap() error { return ErrDigestMismatch }

// SizeError reports that a blob's length differs from its descriptor's size.
// It wraps [ErrTruncated] when the blob is short and [ErrSizeMismatch] when it is long.
type SizeError struct {
	// Digest names the blob.
	Digest v1.Hash
	// Size is the size the descriptor promised.
	Size int64
	// Got is the number of bytes read; for a long blob it is where reading stopped.
	Got int64
}

// Error implements error.
func (e *SizeError) Error() string {
	if e.Got < e.Size {
		return fmt.Sprintf("ocifetch: blob %s truncated: got %d of %d bytes", e.Digest, e.Got, e.Size)
	}
	return fmt.Sprintf("ocifetch: blob %s larger than its size %d", e.Digest, e.Size)
}

// Unwrap returns [ErrTruncated] or [ErrSizeMismatch].
func (e *SizeError) Unwrap() error {
	if e.Got < e.Size {
		return ErrTruncated
	}
	return ErrSizeMismatch
}

// DescriptorError reports a descriptor (an index child, an index.json entry,
// a manifest's config or layer, or a registry's Content-Type for the
// document it sends) that disagrees with the document it describes, or that
// cannot describe one. It wraps [ErrDescriptorMismatch]. Sizes and digests
// that disagree with the bytes are reported as [*SizeError] and
// [*DigestError].
type DescriptorError struct {
	// What names the described object: "index child", "config", "layer"...
	What string
	// Digest names the document, when known.
	Digest v1.Hash
	// Field is what declared the media type: "descriptor" or "Content-Type".
	Field string
	// Declared is the media type the descriptor or header gives.
	Declared string
	// Found is what the document says of itself.
	Found string
	// Problem, when set, says why the descriptor cannot describe any
	// document (no digest, a negative size); the other fields are then unset.
	Problem string
}

// Error implements error.
func (e *DescriptorError) Error() string {
	obj := e.What
	if e.Digest.Hex != "" {
		obj += " " + e.Digest.String()
	}
	if e.Problem != "" {
		return fmt.Sprintf("ocifetch: %s: the descriptor %s", obj, e.Problem)
	}
	return fmt.Sprintf("ocifetch: %s: the %s says %q but the document is %s", obj, e.Field, e.Declared, e.Found)
}

// Unwrap returns [ErrDescriptorMismatch].
func (e *DescriptorError) Unwrap() error { return ErrDescriptorMismatch }

// PlatformError reports that no image matches the wanted platform: either no
// entry of an index, or the config of a single-platform image (which
// [WithAllowPlatformMismatch] accepts). It wraps [ErrPlatform]. Its message
// names no option, so that a command line can add the flag that fixes it.
type PlatformError struct {
	// Want is the platform asked for.
	Want v1.Platform
	// Offered lists the platforms the index offers, or the single image's platform.
	Offered []v1.Platform
	// Index is true when Offered comes from an image index.
	Index bool
}

// Error implements error.
func (e *PlatformError) Error() string {
	offered := make([]string, len(e.Offered))
	for i, p := range e.Offered {
		offered[i] = platformString(p)
	}
	if e.Index {
		if len(offered) == 0 {
			return fmt.Sprintf("ocifetch: no image for platform %s: the index lists no platforms", platformString(e.Want))
		}
		return fmt.Sprintf("ocifetch: no image for platform %s; the index offers %s", platformString(e.Want), strings.Join(offered, ", "))
	}
	return fmt.Sprintf("ocifetch: image is for platform %s, not %s", strings.Join(offered, ", "), platformString(e.Want))
}

// Unwrap returns [ErrPlatform].
func (e *PlatformError) Unwrap() error { return ErrPlatform }

// redactedError hides secrets in an error's message. It answers [errors.Is]
// for the sentinels of the error it hides but does not unwrap to it, so
// [errors.As] cannot reach the unredacted message.
type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string        { return e.msg }
func (e *redactedError) Is(target error) bool { return errors.Is(e.err, target) }

// redact returns err with every non-empty secret replaced in its message.
func redact(err error, secrets ...string) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	changed := false
	for _, s := range secrets {
		if s != "" && strings.Contains(msg, s) {
			msg = strings.ReplaceAll(msg, s, "[REDACTED]")
			changed = true
		}
	}
	if !changed {
		return err
	}
	return &redactedError{msg: msg, err: err}
}
