package verity_test

import (
	"errors"
	"testing"

	"github.com/img2ext4/img2ext4/verity"
)

// FuzzParseUUID checks verity.ParseUUID against its documented grammar, decoded here
// digit by digit: dashes anywhere are ignored, and what remains must be exactly 32
// hexadecimal digits of either case, the UUID's bytes in order, high nibble first;
// anything else is an ErrFormat.
func FuzzParseUUID(f *testing.F) {
	for _, s := range []string{
		"01234567-89ab-cdef-0123-456789abcdef", "0123456789ABCDEF0123456789abcdef", "-0-1-2-3-4-5-6-7-8-9-a-b-c-d-e-f-0-1-2-3-4-5-6-7-8-9-a-b-c-d-e-f-",
		"01234567-89ab-cdef-0123-456789abcde", "01234567-89ab-cdef-0123-456789abcdefa", "0123456789abcdef0123456789abcdeg", "", "{01234567-89ab-cdef-0123-456789abcdef}",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var want [16]byte
		n, valid := 0, true
		for i := 0; i < len(s) && valid; i++ {
			c := s[i]
			var v byte
			switch {
			case c == '-':
				continue
			case '0' <= c && c <= '9':
				v = c - '0'
			case 'a' <= c && c <= 'f':
				v = c - 'a' + 10
			case 'A' <= c && c <= 'F':
				v = c - 'A' + 10
			default:
				valid = false
				continue
			}
			if n < 32 {
				want[n/2] |= v << (4 * (1 - n%2))
			}
			n++
		}
		valid = valid && n == 32
		got, err := verity.ParseUUID(s)
		if !valid {
			if !errors.Is(err, verity.ErrFormat) {
				t.Fatalf("ParseUUID(%q) = %x, %v; want an ErrFormat", s, got, err)
			}
			return
		}
		if err != nil || got != want {
			t.Fatalf("ParseUUID(%q) = %x, %v; want %x", s, got, err, want)
		}
	})
}
