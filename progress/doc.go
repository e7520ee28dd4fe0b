// Package progress turns the [Event] values that a conversion reports into
// human- or machine-readable output.
//
// Libraries only ever see a [Func]; rendering lives here, and only the
// command uses it. A [Renderer] writes in one of several [Mode] values:
// an in-place, one-line-per-layer display for terminals ([ModeTTY]), one
// throttled line per milestone for logs ([ModePlain]), one JSON object per
// line for tools ([ModeJSON]), or nothing at all ([ModeNone]).
//
// The callback returned by [Renderer.Func] never writes and never waits on
// the writer: it records the latest state of each layer under a short
// mutex, and a background goroutine redraws at a fixed interval. A slow or
// stuck writer therefore delays the output, never the conversion. The cost
// is that plain and JSON output is coalesced: intermediate events that
// arrive between two redraws are folded into the latest one; phase changes
// and completions are always written.
//
// A Renderer also ends the output: [Renderer.Finish] adds a [Summary] of
// the result (a final JSON object of type "result" in ModeJSON, closing
// lines otherwise), and [Renderer.Fail] marks every row that had not
// finished as failed or cancelled, so that none is left "Waiting", and in
// ModeJSON adds a final object of type "error". In ModeJSON every line
// written is one JSON object. TTY lines fit the terminal's width: a narrow
// terminal shortens a layer's name and drops its bar and speed before any
// of its byte counts.
//
// A [Tracker] is for programs that draw their own display: it folds the
// events into a [Snapshot] of totals per phase (bytes done and expected,
// layers started and completed, speed, percentage, time left) that a user
// interface polls from any goroutine.
//
// Who calls a [Func], and whether calls may overlap, is up to the library
// that takes it, and its docs say so; [Renderer.Func] is safe for
// concurrent use in any case.
//
// The package refuses to track more than a few thousand distinct layers
// and to queue more than a few thousand unwritten milestones; beyond those
// caps, events fold into the latest state of their layer or are dropped.
// The output contains no wall-clock timestamps: it depends only on the
// events, and on the clock that [WithClock] injects for throttling.
package progress
