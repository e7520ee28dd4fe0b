package layerapply

import (
	"errors"
	"fmt"

	"github.com/img2ext4/img2ext4/layerstream"
)

var (
	// ErrUnsafePath reports a name, link target or whiteout that would leave the image root
	// or go through a symbolic link where that is not allowed.
	ErrUnsafePath = errors.New("layerapply: unsafe path")
	// ErrInvalidEntry reports a tar member that cannot be applied.
	ErrInvalidEntry = errors.New("layerapply: invalid entry")
	// ErrDiffIDMismatch reports a layer whose uncompressed content does not hash to the
	// DiffID in the image config. It is [layerstream.ErrDiffIDMismatch].
	ErrDiffIDMismatch = layerstream.ErrDiffIDMismatch
	// ErrLimit reports input beyond a limit set with [WithLimits]. It is
	// [layerstream.ErrLimit].
	ErrLimit = layerstream.ErrLimit
)

// EntryError records an error and the layer and entry that caused it.
type EntryError struct {
	// Layer is the layer's digest (or its index when the digest is unknown).
	Layer string
	// Name is the entry's name as the tar gave it.
	Name string
	// Op is what was being done: "apply", "whiteout", "link", ...
	Op string
	// Err is the underlying error.
	Err error
}

// Error returns "layer L: OP NAME: ERR".
func (e *EntryError) Error() string {
	return fmt.Sprintf("layer %s: %s %q: %v", e.Layer, e.Op, e.Name, e.Err)
}

// Unwrap returns the underlying error.
func (e *EntryError) Unwrap() error { return e.Err }

// DiffIDError reports a layer whose uncompressed content hashed to Got instead of Want.
type DiffIDError = layerstream.DiffIDError

// LimitError reports which limit was exceeded.
type LimitError = layerstream.LimitError
