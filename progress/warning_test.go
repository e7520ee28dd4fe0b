package progress_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/img2ext4/img2ext4/progress"
)

// TestWarningEvents: JSON lists each warning as it comes, with its details; plain output
// leaves them to the final summary and keeps its rows.
func TestWarningEvents(t *testing.T) {
	warn := progress.Event{Phase: progress.PhaseWarning, Layer: -1, Digest: "sha256:ab", Total: -1,
		Warning: &progress.Warning{Path: "usr/bin/ping", Attr: "security.capability", Action: "dropped", Reason: "v3 for uid 1000"}}
	for _, tc := range []struct {
		mode progress.Mode
		want bool
	}{{progress.ModeJSON, true}, {progress.ModePlain, false}} {
		t.Run(tc.mode.String(), func(t *testing.T) {
			var buf bytes.Buffer
			r := progress.NewRenderer(&buf, tc.mode)
			f := r.Func()
			f(progress.Event{Phase: progress.PhaseApply, Layer: 0, Layers: 1, Digest: "sha256:ab", Total: 10})
			f(warn)
			f(progress.Event{Phase: progress.PhaseApply, Layer: 0, Layers: 1, Digest: "sha256:ab", Done: 10, Total: 10, Complete: true})
			if err := r.Close(); err != nil {
				t.Fatal(err)
			}
			out := buf.String()
			got := strings.Contains(out, `"warning":{"path":"usr/bin/ping","attr":"security.capability","action":"dropped","reason":"v3 for uid 1000"}`)
			if got != tc.want {
				t.Errorf("warning details shown: %v, want %v; output:\n%s", got, tc.want, out)
			}
			if !tc.want && strings.Contains(out, "warning") {
				t.Errorf("plain output shows the warning event:\n%s", out)
			}
		})
	}
}
