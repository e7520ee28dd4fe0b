package ext4writer

import (
	"errors"
	"fmt"
)

// Sentinel errors. Errors returned by the [Writer] wrap one of these (or
// an I/O error from the destination) with the operation and path.
var (
	// ErrClosed is returned by calls on a closed Writer.
	ErrClosed = errors.New("ext4writer: writer closed")
	// ErrInvalidName is returned for names that are not unrooted slash
	// paths without empty, "." or ".." elements (as [io/fs.ValidPath],
	// but any bytes but NUL are allowed), or have elements longer than
	// 255 bytes.
	ErrInvalidName = errors.New("ext4writer: invalid name")
	// ErrNotExist is returned when a name or its parent does not exist.
	ErrNotExist = errors.New("ext4writer: file does not exist")
	// ErrNotDir is returned when a parent is not a directory.
	ErrNotDir = errors.New("ext4writer: not a directory")
	// ErrIsDir is returned when linking to a directory or replacing the root.
	ErrIsDir = errors.New("ext4writer: is a directory")
	// ErrInvalidFile is returned for unsupported or inconsistent File values.
	ErrInvalidFile = errors.New("ext4writer: invalid file")
	// ErrWriteTooLong is returned when more than File.Size bytes are written.
	ErrWriteTooLong = errors.New("ext4writer: write too long")
	// ErrShortWrite is returned when a body was not complete before the
	// next Create, Link, Remove or Close.
	ErrShortWrite = errors.New("ext4writer: missing body bytes")
	// ErrNoSpace is returned (inside a *SizeError) when the image would
	// exceed its fixed or maximum size.
	ErrNoSpace = errors.New("ext4writer: image size limit reached")
	// ErrTooManyLinks is returned when a file would get more than 65000 links.
	ErrTooManyLinks = errors.New("ext4writer: too many links")
	// ErrXattr is returned for extended attributes ext4 cannot store:
	// unknown namespaces, malformed ACLs, or too much data for one
	// inode plus one block.
	ErrXattr = errors.New("ext4writer: unsupported extended attribute")
	// ErrTooManyInodes is returned when more inodes are needed than the
	// configured inode count or than ext4 allows.
	ErrTooManyInodes = errors.New("ext4writer: too many inodes")
)

// SizeError reports that the image does not fit in Limit bytes. It
// matches [ErrNoSpace] with errors.Is.
type SizeError struct {
	Op    string // operation that failed, such as "write" or "close"
	Name  string // path being written, if any
	Limit int64  // size limit in bytes
	Need  int64  // smallest size that fits, when known (0 otherwise)
}

// Error describes the limit that was reached and, when known, the size
// that would fit, in the units sizes are typed in (see [FormatSize]).
func (e *SizeError) Error() string {
	s := "ext4writer: " + e.Op
	if e.Name != "" {
		s += " " + e.Name
	}
	if e.Need > 0 {
		return s + fmt.Sprintf(": the content needs an image of at least %s, more than the limit of %s", sizeString(e.Need), sizeString(e.Limit))
	}
	return s + fmt.Sprintf(": image size limit of %s reached", sizeString(e.Limit))
}

// Unwrap returns [ErrNoSpace].
func (e *SizeError) Unwrap() error { return ErrNoSpace }

func opErr(op, name string, err error) error {
	if name == "" {
		return fmt.Errorf("%s: %w", op, err)
	}
	return fmt.Errorf("%s %s: %w", op, name, err)
}
