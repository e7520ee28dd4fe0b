package ext4writer

import "fmt"

// SetSize fixes the size the image will have at Close, after the content is known: the
// caller asks [Writer.MinSize] for the smallest image, adds free space or rounds up to an
// alignment, and sets the result. n must be at least MinSize and at most the maximum size
// ([WithMaxSize]); a smaller n fails at Close with a *[SizeError]. Nothing may be added
// after SetSize grows the image past what was written, but Close may follow directly.
func (w *Writer) SetSize(n int64) error {
	if err := w.check("resize", ""); err != nil {
		return err
	}
	if n < 64*blockSize || n/blockSize > int64(w.alloc.limit) {
		return &SizeError{Op: "resize", Limit: int64(w.alloc.limit) * blockSize, Need: n}
	}
	if n%blockSize != 0 {
		return fmt.Errorf("ext4writer: size %d is not a multiple of the %d-byte block", n, blockSize)
	}
	w.o.size = n
	return nil
}
