package layerapply

import (
	"archive/tar"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// ErrStrict reports an attribute or entry that [WithStrict] refused to drop.
var ErrStrict = errors.New("layerapply: strict")

// StrictError is a [Warning] that [WithStrict] turned into an error.
type StrictError struct {
	Warning Warning
}

// Error describes what would have been dropped or skipped, and why.
func (e *StrictError) Error() string {
	w := e.Warning
	if w.Attr == "" {
		return fmt.Sprintf("%v: the entry would be %s: %s", ErrStrict, w.Action, w.Reason)
	}
	return fmt.Sprintf("%v: attribute %s would be %s: %s", ErrStrict, w.Attr, w.Action, w.Reason)
}

// Unwrap returns [ErrStrict].
func (e *StrictError) Unwrap() error { return ErrStrict }

// WithStrict makes Apply fail with a [*StrictError] instead of dropping an attribute or
// skipping an entry that the output cannot hold (see [Warning]). Changes that keep the
// meaning, such as sorting an ACL, are still made and reported. The default is false:
// drop, report through [WithWarnings], and go on, as umoci and containerd do.
func WithStrict(strict bool) Option {
	return func(o *options) error { o.strict = strict; return nil }
}

// WithWarnings calls fn for every attribute Apply drops or changes and every entry it skips
// (see [Warning]), synchronously, from the goroutine calling Apply, in the order met. The
// default is to log them at debug level only.
func WithWarnings(fn func(Warning)) Option {
	return func(o *options) error { o.warn = fn; return nil }
}

// warn reports one thing the policy did to the current layer's entry path, or returns the
// error that [WithStrict] makes of it.
func (a *applier) warn(path, attr string, act Action, reason string) error {
	w := Warning{Layer: a.digest, Path: path, Attr: attr, Action: act, Reason: reason}
	if a.opts.strict && act != ActionChanged {
		return &StrictError{Warning: w}
	}
	a.opts.logger.Debug("metadata "+string(act), "layer", w.Layer, "name", w.Path, "attr", w.Attr, "reason", w.Reason)
	if a.opts.warn != nil {
		a.opts.warn(w)
	}
	return nil
}

// skipEntry leaves out the entry named name (as the tar gave it; clean is its cleaned
// form) for reason, or returns the strict error.
func (a *applier) skipEntry(name, clean, reason string) error {
	if err := a.warn(name, "", ActionSkipped, reason); err != nil {
		return a.entryErr("apply", name, err)
	}
	if a.skipped == nil {
		a.skipped = make(map[string]bool)
	}
	a.skipped[clean] = true
	return nil
}

// xattrs returns the extended attributes the sink gets for hdr, sorted by name: those that
// [xattrPolicy] keeps, after reporting what it dropped or changed. A hard link gets none:
// it shares its target's inode.
func (a *applier) xattrs(hdr *tar.Header) ([]Xattr, error) {
	if len(hdr.PAXRecords) == 0 || hdr.Typeflag == tar.TypeLink {
		return nil, nil
	}
	xs, notes, err := collectXattrs(hdr.PAXRecords, a.opts.limits.XattrBytes, a.accounts.lookup)
	if err != nil || len(xs)+len(notes) == 0 {
		return nil, err
	}
	keep, more := xattrPolicy(hdr.Typeflag, xs)
	for _, n := range append(notes, more...) {
		if err := a.warn(hdr.Name, n.attr, n.action, n.reason); err != nil {
			return nil, err
		}
	}
	if len(keep) == 0 {
		return nil, nil
	}
	out := make([]Xattr, len(keep))
	for i, x := range keep {
		out[i] = Xattr{Name: x.name, Value: []byte(x.value)}
	}
	slices.SortFunc(out, func(x, y Xattr) int { return strings.Compare(x.Name, y.Name) })
	return out, nil
}
