package ocifetch

import (
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// newHasher returns a hash for a digest algorithm.
func newHasher(alg string) (hash.Hash, error) {
	switch alg {
	case "sha256":
		return sha256.New(), nil
	case "sha512":
		return sha512.New(), nil
	}
	return nil, fmt.Errorf("%w: digest algorithm %q", ErrUnsupportedMediaType, alg)
}

// verifyReader passes a blob through while counting and hashing it; at EOF
// it checks the size and digest of its descriptor. It never reads more than
// one byte past the promised size.
type verifyReader struct {
	r      io.Reader
	c      io.Closer
	h      hash.Hash
	digest v1.Hash
	size   int64 // -1 if unknown
	n      int64
	err    error // sticky
}

// verify wraps rc so that reading it to EOF checks desc's size and digest.
// Closing the result closes rc.
func verify(rc io.ReadCloser, desc v1.Descriptor) (io.ReadCloser, error) {
	h, err := newHasher(desc.Digest.Algorithm)
	if err != nil {
		rc.Close()
		return nil, err
	}
	size := desc.Size
	var r io.Reader = rc
	if size >= 0 {
		r = io.LimitReader(rc, size+1)
	}
	return &verifyReader{r: r, c: rc, h: h, digest: desc.Digest, size: size}, nil
}

func (v *verifyReader) Read(p []byte) (int, error) {
	if v.err != nil {
		return 0, v.err
	}
	n, err := v.r.Read(p)
	v.n += int64(n)
	if v.size >= 0 && v.n > v.size {
		v.err = &SizeError{Digest: v.digest, Size: v.size, Got: v.n}
		return 0, v.err
	}
	v.h.Write(p[:n])
	switch {
	case err == io.EOF:
		v.err = v.check()
		if v.err == nil {
			v.err = io.EOF
		}
		return n, v.err
	case errors.Is(err, io.ErrUnexpectedEOF) && v.size >= 0 && v.n < v.size:
		v.err = &SizeError{Digest: v.digest, Size: v.size, Got: v.n}
		return n, v.err
	case err != nil:
		v.err = err
	}
	return n, err
}

func (v *verifyReader) check() error {
	if v.size >= 0 && v.n != v.size {
		return &SizeError{Digest: v.digest, Size: v.size, Got: v.n}
	}
	got := v1.Hash{Algorithm: v.digest.Algorithm, Hex: hex.EncodeToString(v.h.Sum(nil))}
	if got != v.digest {
		return &DigestError{Digest: v.digest, Got: got}
	}
	return nil
}

func (v *verifyReader) Close() error { return v.c.Close() }

// readCapped reads all of r, failing with [ErrLimit] past limit bytes.
func readCapped(r io.Reader, limit int64, what string) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%w: %s larger than %d bytes", ErrLimit, what, limit)
	}
	return b, nil
}

// readVerified reads a small blob (manifest or config) into memory,
// checking its size and digest.
func readVerified(r io.Reader, desc v1.Descriptor, limit int64) ([]byte, error) {
	if desc.Size > limit {
		return nil, fmt.Errorf("%w: blob %s of %d bytes larger than %d", ErrLimit, desc.Digest, desc.Size, limit)
	}
	b, err := readCapped(r, limit, "blob "+desc.Digest.String())
	if err != nil {
		return nil, err
	}
	if err := checkBytes(b, desc.Digest, desc.Size); err != nil {
		return nil, err
	}
	return b, nil
}

// checkBytes checks b against digest and, when size >= 0, size.
func checkBytes(b []byte, digest v1.Hash, size int64) error {
	if size >= 0 && int64(len(b)) != size {
		return &SizeError{Digest: digest, Size: size, Got: int64(len(b))}
	}
	h, err := newHasher(digest.Algorithm)
	if err != nil {
		return err
	}
	h.Write(b)
	got := v1.Hash{Algorithm: digest.Algorithm, Hex: hex.EncodeToString(h.Sum(nil))}
	if got != digest {
		return &DigestError{Digest: digest, Got: got}
	}
	return nil
}

// sha256Of returns the sha256 digest of b.
func sha256Of(b []byte) v1.Hash {
	sum := sha256.Sum256(b)
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}
}
