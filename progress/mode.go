package progress

import (
	"errors"
	"fmt"
	"strings"
)

// ErrUnknownMode is returned by [ParseMode] for a name it does not know.
var ErrUnknownMode = errors.New("progress: unknown mode")

// Mode selects how a [Renderer] writes progress.
type Mode int

// The modes a [Renderer] supports.
const (
	// ModeAuto is [ModeTTY] when the writer is a terminal and [ModePlain] otherwise.
	ModeAuto Mode = iota
	// ModeTTY redraws one line per layer in place, with a bar, like docker pull.
	ModeTTY
	// ModePlain writes one line per phase start and completion of each layer,
	// and at most one line every two seconds per layer in between.
	ModePlain
	// ModeJSON writes only JSON objects, one per line, each with a "type"
	// member saying what it is. Objects of type "progress" carry an [Event],
	// with the members its field tags name, coalesced to at most ten lines a
	// second per layer plus every phase change and completion; each
	// [PhaseWarning] event is an object of type "warning". The last line
	// is an object of type "result" with the members of [Summary] when
	// [Renderer.Finish] was called, or of type "error" with "error" (the
	// message) and "cancelled" (present and true when the work was cancelled)
	// when [Renderer.Fail] was.
	ModeJSON
	// ModeNone writes nothing.
	ModeNone
)

var modeNames = [...]string{
	ModeAuto:  "auto",
	ModeTTY:   "tty",
	ModePlain: "plain",
	ModeJSON:  "json",
	ModeNone:  "none",
}

// String returns the name of m as [ParseMode] accepts it.
func (m Mode) String() string {
	if m >= 0 && int(m) < len(modeNames) {
		return modeNames[m]
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// ParseMode returns the Mode named by s, one of "auto", "tty", "plain",
// "json" or "none", ignoring case and surrounding space. Any other name
// gives an error wrapping [ErrUnknownMode].
func ParseMode(s string) (Mode, error) {
	name := strings.ToLower(strings.TrimSpace(s))
	for m, n := range modeNames {
		if n == name {
			return Mode(m), nil
		}
	}
	return ModeAuto, fmt.Errorf("parse progress mode %q: %w (want auto, tty, plain, json or none)", s, ErrUnknownMode)
}
