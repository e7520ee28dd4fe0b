package progress

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// feedPartial feeds h a short conversion of three layers: two downloaded, the first
// applied (with a warning), the second applying, the third not started.
func feedPartial(h *harness) {
	h.f(withSpeed(complete(Event{Phase: PhaseResolve, Layer: -1, Layers: 3, Total: -1}), 0, 200*time.Millisecond))
	h.f(complete(dl(0, digest0, 2*mib, 2*mib)))
	h.f(Event{Phase: PhaseWarning, Layer: -1, Digest: digest0, Total: -1,
		Warning: &Warning{Path: "usr/bin/ping", Attr: "security.capability", Action: "dropped", Reason: "v3 for uid 1000"}})
	h.f(withSpeed(complete(ap(0, digest0, 4*mib)), 4*mib, time.Second))
	h.f(complete(dl(1, digest1, mib, mib)))
	h.f(withSpeed(ap(1, digest1, 512*kib), 512*kib, time.Second))
}

// decodeLines decodes every line of out as one JSON object; a line that is not
// one fails the test.
func decodeLines(t *testing.T, out string) []map[string]any {
	t.Helper()
	if !strings.HasSuffix(out, "\n") {
		t.Fatalf("output does not end with a newline: %q", out)
	}
	var objs []map[string]any
	for i, line := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		var m map[string]any
		dec := json.NewDecoder(strings.NewReader(line))
		if err := dec.Decode(&m); err != nil || dec.More() {
			t.Fatalf("line %d is not one JSON object (%v): %q", i+1, err, line)
		}
		if _, ok := m["type"].(string); !ok {
			t.Errorf("line %d has no type: %q", i+1, line)
		}
		objs = append(objs, m)
	}
	return objs
}

func TestJSONOnlyObjects(t *testing.T) {
	fs := &Filesystem{Size: 64 * mib, Used: 5 * mib, Free: 59 * mib, Available: 58 * mib, Inodes: 16384, FreeInodes: 16000}
	tests := []struct {
		name   string
		end    func(r *Renderer)
		want   map[string]any // members of the last object
		absent []string       // members the last object must not have
	}{
		{
			name: "ext4 result",
			end: func(r *Renderer) {
				r.Finish(Summary{Digest: digest0, Platform: "linux/amd64", Layers: 3, Output: "/tmp/a b.img", Format: "ext4",
					Filesystem: fs, Elapsed: 1500 * time.Millisecond})
			},
			want: map[string]any{"type": "result", "digest": digest0, "platform": "linux/amd64", "layers": 3.0,
				"output": "/tmp/a b.img", "format": "ext4", "size": float64(64 * mib), "used": float64(5 * mib),
				"free": float64(59 * mib), "available": float64(58 * mib), "inodes": 16384.0, "inodes_free": 16000.0,
				"elapsed_ns": 1.5e9},
			absent: []string{"warnings", "error"},
		},
		{
			name: "dir result",
			end: func(r *Renderer) {
				r.Finish(Summary{Digest: digest1, Platform: "linux/arm64/v8", Layers: 1, Output: "rootfs", Format: "dir",
					Warnings: []string{"not root: skipped 2 owners"}, Elapsed: time.Second})
			},
			want: map[string]any{"type": "result", "digest": digest1, "platform": "linux/arm64/v8", "layers": 1.0,
				"output": "rootfs", "format": "dir", "warnings": []any{"not root: skipped 2 owners"}, "elapsed_ns": 1e9},
			absent: []string{"size", "used", "free", "available", "inodes", "inodes_free", "error"},
		},
		{
			name:   "error",
			end:    func(r *Renderer) { r.Fail(fmt.Errorf("apply layer 2: %w", errors.New("disk full\nreally"))) },
			want:   map[string]any{"type": "error", "error": "apply layer 2: disk full\nreally"},
			absent: []string{"cancelled", "digest"},
		},
		{
			name:   "cancelled",
			end:    func(r *Renderer) { r.Fail(fmt.Errorf("download: %w", context.Canceled)) },
			want:   map[string]any{"type": "error", "error": "download: context canceled", "cancelled": true},
			absent: []string{"digest"},
		},
		{
			name: "first end wins",
			end: func(r *Renderer) {
				r.Fail(errors.New("first"))
				r.Finish(Summary{Format: "tar", Output: "-"})
				r.Fail(errors.New("second"))
			},
			want: map[string]any{"type": "error", "error": "first"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, ModeJSON)
			feedPartial(h)
			first := h.step()
			h.f(withSpeed(ap(1, digest1, 700*kib), 700*kib, time.Second)) // pending at Close
			tc.end(h.r)
			out := first + h.close()
			objs := decodeLines(t, out)
			warnings := 0
			for _, o := range objs[:len(objs)-1] {
				switch {
				case o["phase"] == string(PhaseWarning) && o["type"] == "warning":
					warnings++
				case o["type"] != "progress":
					t.Errorf("object before the last of type %v: %v", o["type"], o)
				}
			}
			if warnings != 1 {
				t.Errorf("%d warning objects, want 1", warnings)
			}
			if got := objs[len(objs)-2]["done"]; got != float64(700*kib) {
				t.Errorf("the last progress object has done %v, want the pending event's %d", got, 700*kib)
			}
			last := objs[len(objs)-1]
			for k, v := range tc.want {
				got, ok := last[k]
				if !ok || fmt.Sprint(got) != fmt.Sprint(v) {
					t.Errorf("last object %s = %v (present %v), want %v", k, got, ok, v)
				}
			}
			for _, k := range tc.absent {
				if v, ok := last[k]; ok {
					t.Errorf("last object has %s = %v, want none", k, v)
				}
			}
		})
	}
}

func TestTTYFailMarksRows(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"error", errors.New("boom"), "" +
			"\r\x1b[2KResolved image: 3 layers in 0.2s\n" +
			"\r\x1b[2K0123456789ab: Done        [====================] 4.0 MiB\n" +
			"\r\x1b[2Kfedcba987654: Failed      512.0 KiB\n" +
			"\r\x1b[2Klayer 3     : Cancelled\n" +
			"\r\x1b[2KFailed after applying 1 of 3 layers\n"},
		{"cancelled", context.Canceled, "" +
			"\r\x1b[2KResolved image: 3 layers in 0.2s\n" +
			"\r\x1b[2K0123456789ab: Done        [====================] 4.0 MiB\n" +
			"\r\x1b[2Kfedcba987654: Cancelled   512.0 KiB\n" +
			"\r\x1b[2Klayer 3     : Cancelled\n" +
			"\r\x1b[2KCancelled after applying 1 of 3 layers\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, ModeTTY, WithWidth(80))
			feedPartial(h)
			if got := h.step(); !strings.Contains(got, "layer 3     : Waiting") || !strings.Contains(got, "Applying") {
				t.Fatalf("frame before the failure lacks the waiting and applying rows:\n%s", got)
			}
			h.r.Fail(tc.err)
			got := h.close()
			checkOutput(t, "final frame", got, "\x1b[4A"+tc.want)
			for _, stale := range []string{"Waiting", "Applying", "Downloading"} {
				if strings.Contains(got, stale) {
					t.Errorf("final frame still shows %q", stale)
				}
			}
		})
	}
}

func TestTTYFailDuringResolve(t *testing.T) {
	h := newHarness(t, ModeTTY, WithWidth(80))
	h.f(Event{Phase: PhaseResolve, Layer: -1, Total: -1})
	checkOutput(t, "frame", h.step(), "\r\x1b[2KResolving image\n")
	h.r.Fail(errors.New("no such host"))
	checkOutput(t, "final frame", h.close(), "\x1b[1A"+
		"\r\x1b[2KResolving image: stopped\n"+
		"\r\x1b[2KFailed\n")
}

func TestSummaryLines(t *testing.T) {
	s := Summary{Digest: digest0, Platform: "linux/amd64", Layers: 3, Output: "out.img", Format: "ext4",
		Filesystem: &Filesystem{Size: 64 * mib, Used: 5 * mib, Free: 59 * mib, Available: 58 * mib, Inodes: 16384, FreeInodes: 16000},
		Warnings:   []string{"something\x1b[31m odd"}, Elapsed: 1500 * time.Millisecond}
	t.Run("tty", func(t *testing.T) {
		h := newHarness(t, ModeTTY, WithWidth(40))
		h.f(withSpeed(complete(Event{Phase: PhaseDone, Layer: -1, Total: -1}), 0, 1500*time.Millisecond))
		h.r.Finish(s)
		// The summary is not cut to the width: it is written once, below the display.
		checkOutput(t, "close", h.close(), ""+
			"\r\x1b[2KDone in 1.5s\n"+
			"Wrote ext4 out.img ("+digest0+", linux/amd64, 3 layers) in 1.5s\n"+
			"Filesystem: 64.0 MiB, 5.0 MiB used, 58.0 MiB available (59.0 MiB free), 384 of 16384 inodes used\n"+
			"Warning: something?[31m odd\n")
	})
	t.Run("plain", func(t *testing.T) {
		h := newHarness(t, ModePlain)
		s := s
		s.Filesystem, s.Warnings, s.Output, s.Format = nil, nil, "-", "tar"
		h.r.Finish(s)
		checkOutput(t, "close", h.close(), "wrote tar to standard output ("+digest0+", linux/amd64, 3 layers) in 1.5s\n")
	})
	t.Run("plain failure", func(t *testing.T) {
		h := newHarness(t, ModePlain)
		feedPartial(h)
		h.step()
		h.r.Fail(errors.New("boom"))
		checkOutput(t, "close", h.close(), "failed after applying 1 of 3 layers\n")
	})
	t.Run("none", func(t *testing.T) {
		var buf bytes.Buffer
		r := NewRenderer(&buf, ModeNone)
		r.Finish(s)
		r.Fail(errors.New("x"))
		if err := r.Close(); err != nil || buf.Len() > 0 {
			t.Errorf("ModeNone: Close = %v, wrote %q", err, buf.String())
		}
	})
}

// TestTTYFitsWidth checks that every line fits the width, and that the byte counts stay
// whole at every width that can hold them with a short name: the name is shortened first.
func TestTTYFitsWidth(t *testing.T) {
	evs := []Event{
		withSpeed(dl(0, digest0, 1000*mib, 1023*mib), 1000*mib, time.Second),
		withSpeed(ap(1, "", 123*mib), 12*mib, time.Second),
		dl(2, "sha256:\x1b[31mevil", 0, -1),
	}
	nums := []string{"1000.0 MiB/1023.0 MiB", "123.0 MiB", "0 B"}
	for width := 1; width <= 100; width++ {
		h := newHarness(t, ModeTTY, WithWidth(width))
		for _, e := range evs {
			e.Layers = 3
			h.f(e)
		}
		lines := strings.Split(strings.TrimSuffix(escapes.ReplaceAllString(h.close(), ""), "\n"), "\n")
		if len(lines) != 3 {
			t.Fatalf("width %d: got %d lines, want 3: %q", width, len(lines), lines)
		}
		for i, l := range lines {
			if len(l) > max(width-1, 1) {
				t.Errorf("width %d: line %q has %d columns", width, l, len(l))
			}
			// status + ": " + 4 name characters + the numbers, with spaces.
			need := len("Downloading") + 2 + minName + 1 + len(nums[i])
			if width-1 >= need && !strings.Contains(l, nums[i]) {
				t.Errorf("width %d: line %q does not show %q whole", width, l, nums[i])
			}
		}
		if width == 40 {
			checkOutput(t, "width 40", strings.Join(lines, "\n"), ""+
				"0123: Downloading 1000.0 MiB/1023.0 MiB\n"+
				"layer 2: Applying 123.0 MiB 12.0 MiB/s\n"+
				"?[31mevil   : Downloading 0 B")
		}
	}
}

// TestRetries: a retry is written at once in plain output, with its reason, and a TTY row
// shows the count while the layer downloads.
func TestRetries(t *testing.T) {
	retry := func(e Event, n int, why string) Event {
		e.Retries, e.Retry = n, why
		return e
	}
	t.Run("plain", func(t *testing.T) {
		h := newHarness(t, ModePlain)
		h.f(dl(0, digest0, 0, 2*mib))
		h.step()
		h.f(retry(dl(0, digest0, mib, 2*mib), 1, "connection reset"))
		checkOutput(t, "retry", h.step(), "[1/2] 0123456789ab downloading 1.0 MiB / 2.0 MiB (50%), retry 1: connection reset\n")
		h.f(retry(dl(0, digest0, mib+1, 2*mib), 1, "connection reset"))
		checkOutput(t, "same retry, throttled", h.step(), "")
	})
	t.Run("tty", func(t *testing.T) {
		h := newHarness(t, ModeTTY, WithWidth(80))
		h.f(retry(withSpeed(dl(0, digest0, mib, 2*mib), 512*kib, 2*time.Second), 2, "503"))
		checkOutput(t, "frame", h.close(), ""+
			"\r\x1b[2K0123456789ab: Downloading 1.0 MiB/2.0 MiB 512.0 KiB/s (retry 2)\n"+ // the bar makes way
			"\r\x1b[2Klayer 2     : Waiting\n")
	})
}
