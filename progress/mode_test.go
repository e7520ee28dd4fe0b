package progress

import (
	"errors"
	"testing"
)

func TestParseMode(t *testing.T) {
	tests := []struct {
		in      string
		want    Mode
		wantErr bool
	}{
		{"auto", ModeAuto, false},
		{"tty", ModeTTY, false},
		{"plain", ModePlain, false},
		{"json", ModeJSON, false},
		{"none", ModeNone, false},
		{"JSON", ModeJSON, false},
		{" plain\n", ModePlain, false},
		{"", ModeAuto, true},
		{"fancy", ModeAuto, true},
		{"tty,json", ModeAuto, true},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseMode(tc.in)
			if tc.wantErr {
				if !errors.Is(err, ErrUnknownMode) {
					t.Fatalf("ParseMode(%q) error = %v, want ErrUnknownMode", tc.in, err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("ParseMode(%q) = %v, %v; want %v, nil", tc.in, got, err, tc.want)
			}
		})
	}
}

func TestModeStringRoundTrip(t *testing.T) {
	for _, m := range []Mode{ModeAuto, ModeTTY, ModePlain, ModeJSON, ModeNone} {
		got, err := ParseMode(m.String())
		if err != nil || got != m {
			t.Errorf("ParseMode(%q) = %v, %v; want %v", m.String(), got, err, m)
		}
	}
	if got, want := Mode(42).String(), "Mode(42)"; got != want {
		t.Errorf("Mode(42).String() = %q, want %q", got, want)
	}
}
