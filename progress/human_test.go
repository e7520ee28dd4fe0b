package progress

import (
	"math"
	"testing"
)

func TestHumanBytes(t *testing.T) {
	tests := []struct {
		name string
		n    int64
		want string
	}{
		{"zero", 0, "0 B"},
		{"one", 1, "1 B"},
		{"below KiB", 1023, "1023 B"},
		{"one KiB", 1024, "1.0 KiB"},
		{"KiB and a half", 1536, "1.5 KiB"},
		{"rounds down", 1024 + 51, "1.0 KiB"},
		{"rounds up", 1024 + 52, "1.1 KiB"},
		{"just below MiB", 1<<20 - 1, "1.0 MiB"},
		{"one MiB", 1 << 20, "1.0 MiB"},
		{"MiB", 5*1<<20 + 1<<19, "5.5 MiB"},
		{"just below GiB", 1<<30 - 1, "1.0 GiB"},
		{"GiB", 3 << 30, "3.0 GiB"},
		{"TiB", 2 << 40, "2.0 TiB"},
		{"PiB", 7 << 50, "7.0 PiB"},
		{"EiB", 1 << 60, "1.0 EiB"},
		{"max", math.MaxInt64, "8.0 EiB"},
		{"negative", -1536, "-1.5 KiB"},
		{"negative bytes", -5, "-5 B"},
		{"min", math.MinInt64, "-8.0 EiB"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := HumanBytes(tc.n); got != tc.want {
				t.Errorf("HumanBytes(%d) = %q, want %q", tc.n, got, tc.want)
			}
		})
	}
}
