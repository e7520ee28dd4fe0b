package layerstream

import (
	"errors"
	"fmt"
)

var (
	// ErrDiffIDMismatch reports a layer whose uncompressed content does not hash to the
	// DiffID in the image config.
	ErrDiffIDMismatch = errors.New("layerstream: diffid mismatch")
	// ErrLimit reports input beyond a limit.
	ErrLimit = errors.New("layerstream: limit exceeded")
	// ErrUnsupportedCompression reports a layer compressed in a way this package cannot
	// decode.
	ErrUnsupportedCompression = errors.New("layerstream: unsupported compression")
)

// DiffIDError reports a layer whose uncompressed content hashed to Got instead of Want.
type DiffIDError struct {
	// Layer is the layer's compressed digest, or its index when the digest is unknown.
	Layer string
	// Want is the DiffID from the image config; Got is what the content hashed to.
	Want, Got string
}

// Error describes the mismatch.
func (e *DiffIDError) Error() string {
	return fmt.Sprintf("layer %s: uncompressed digest %s does not match config diff_id %s", e.Layer, e.Got, e.Want)
}

// Unwrap returns [ErrDiffIDMismatch].
func (e *DiffIDError) Unwrap() error { return ErrDiffIDMismatch }

// LimitError reports which limit was exceeded.
type LimitError struct {
	// What names the limit ("entries", "uncompressed bytes", "path length", "xattr size").
	What string
	// Limit is the configured value.
	Limit int64
}

// Error describes the limit.
func (e *LimitError) Error() string { return fmt.Sprintf("%s over the limit of %d", e.What, e.Limit) }

// Unwrap returns [ErrLimit].
func (e *LimitError) Unwrap() error { return ErrLimit }
