package layerstream

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"testing/iotest"
)

func TestReadAhead(t *testing.T) {
	data := bytes.Repeat([]byte("0123456789"), 100_000)
	ra := newReadAhead(iotest.HalfReader(bytes.NewReader(data)), 3, 4096)
	got, err := io.ReadAll(iotest.OneByteReader(io.LimitReader(ra, 10)))
	if err != nil || string(got) != "0123456789" {
		t.Fatalf("first bytes %q, %v", got, err)
	}
	rest, err := io.ReadAll(ra)
	if err != nil || !bytes.Equal(append(got, rest...), data) {
		t.Fatalf("read %d bytes, %v; want %d", len(got)+len(rest), err, len(data))
	}
	ra.Close()

	boom := errors.New("boom")
	ra = newReadAhead(io.MultiReader(bytes.NewReader(data[:5000]), iotest.ErrReader(boom)), 2, 1024)
	got, err = io.ReadAll(ra)
	if !errors.Is(err, boom) || !bytes.Equal(got, data[:5000]) {
		t.Fatalf("got %d bytes and %v, want 5000 bytes then boom", len(got), err)
	}
	ra.Close()

	// Close while the goroutine waits for a free buffer must not hang.
	ra = newReadAhead(bytes.NewReader(data), 2, 16)
	ra.Close()
}
