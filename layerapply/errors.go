package layerapply

import (
	"errors"
	"fmt"
)

var (
	// ErrUnsafePath reports a name, link target or whiteout that would leave the image root
	// or go through a symbolic link where that is not allowed.
	ErrUnsafePath = errors.New("layerapply: unsafe path")
	// ErrInvalidEntry reports a tar member that cannot be applied.
	ErrInvalidEntry = errors.New("layerapply: invalid entry")
	// ErrDiffIDMismatch reports a layer whose uncompressed content does not hash to the
	// DiffID in the image config.
	ErrDiffIDMismatch = errors.New("layerapply: diffid mismatch")
	// ErrLimit reports input beyond a limit set with [WithLimits].
	ErrLimit = errors.New("layerapply: limit exceeded")
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
type DiffIDError struct {
	Layer     string
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
	// What names the limit ("entries", "bytes", "path length", "xattr size").
	What string
	// Limit is the configured value.
	Limit int64
}

// Error describes the limit.
func (e *LimitError) Error() string { return fmt.Sprintf("%s over the limit of %d", e.What, e.Limit) }

// Unwrap returns [ErrLimit].
func (e *LimitError) Unwrap() error { return ErrLimit }
