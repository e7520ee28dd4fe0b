package layerapply

import "testing"

// isZeroOr is the test the directory sink used before isZero: eight bytes ORed at a time.
func isZeroOr(b []byte) bool {
	for len(b) >= 8 {
		if b[0]|b[1]|b[2]|b[3]|b[4]|b[5]|b[6]|b[7] != 0 {
			return false
		}
		b = b[8:]
	}
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

func TestIsZero(t *testing.T) {
	b := make([]byte, 4096)
	for _, n := range []int{0, 1, 7, 8, 9, 4095, 4096} {
		if !isZero(b[:n]) {
			t.Errorf("isZero of %d zeros is false", n)
		}
		for i := range n {
			b[i] = 1
			if isZero(b[:n]) {
				t.Errorf("isZero of %d bytes with byte %d set is true", n, i)
			}
			b[i] = 0
		}
	}
}

// BenchmarkIsZero measures the zero-block test on 4 KiB blocks of zeros, the case that
// reads every byte: isZero (bytes.Equal against a block of zeros) against the 8-byte OR loop.
func BenchmarkIsZero(b *testing.B) {
	buf := make([]byte, 1<<20)
	for _, f := range []struct {
		name string
		fn   func([]byte) bool
	}{{"equal", isZero}, {"or8", isZeroOr}} {
		b.Run(f.name, func(b *testing.B) {
			b.SetBytes(int64(len(buf)))
			for b.Loop() {
				for i := 0; i < len(buf); i += 4096 {
					if !f.fn(buf[i : i+4096]) {
						b.Fatal("not zero")
					}
				}
			}
		})
	}
}
