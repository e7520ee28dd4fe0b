package img2ext4

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// TestSpans checks the written-range set against a bitmap of the same writes.
func TestSpans(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 200 {
		var ss spans
		bits := make([]bool, 300)
		for range rng.IntN(40) {
			off := rng.IntN(290)
			end := off + rng.IntN(300-off)
			if rng.IntN(3) == 0 && len(ss.s) > 0 { // mostly appending, as the writer does
				off = int(ss.s[len(ss.s)-1].end)
				end = min(off+rng.IntN(10), 300)
			}
			ss.add(int64(off), int64(end))
			for i := off; i < end; i++ {
				bits[i] = true
			}
		}
		var want []span
		for i := 0; i < len(bits); i++ {
			if bits[i] {
				j := i
				for j < len(bits) && bits[j] {
					j++
				}
				want = append(want, span{int64(i), int64(j)})
				i = j
			}
		}
		if !slices.Equal(ss.list(), want) {
			t.Fatalf("round %d: got %v, want %v", round, ss.list(), want)
		}
	}
}

func TestUnescapeMount(t *testing.T) {
	for in, want := range map[string]string{`/mnt/a\040b`: "/mnt/a b", `/x\134y`: `/x\y`, `/plain`: "/plain", `/end\04`: `/end\04`} {
		if got := unescapeMount(in); got != want {
			t.Errorf("unescapeMount(%q) = %q, want %q", in, got, want)
		}
	}
}
