package img2ext4

import (
	"fmt"
	"strings"

	"github.com/img2ext4/img2ext4/layerapply"
	"github.com/img2ext4/img2ext4/progress"
)

// MaxWarnings is the most warnings a [Result] lists; the others are only counted.
const MaxWarnings = 1000

// WithStrict makes the conversion fail, naming the layer, entry and attribute, where it
// would otherwise drop something the image carries that the output cannot hold faithfully:
// a file capability for a user namespace's root, an invalid ACL, an attribute namespace
// ext4 has no room for, a name longer than the kernel allows (see [layerapply.Warning]).
// The default is false: drop it, list it in [Result.Warnings], report it as a
// [progress.PhaseWarning] event, and go on.
func WithStrict(strict bool) Option {
	return func(o *options) error { o.strict = strict; return nil }
}

// warnings collects what the merge dropped, skipped or changed, for the Result and as
// progress events.
type warnings struct {
	o       *options
	list    []layerapply.Warning
	omitted int
}

func (c *warnings) add(w layerapply.Warning) {
	if len(c.list) < MaxWarnings {
		c.list = append(c.list, w)
	} else {
		c.omitted++
	}
	c.o.report(progress.Event{Phase: progress.PhaseWarning, Layer: -1, Digest: w.Layer, Total: -1,
		Warning: &progress.Warning{Path: w.Path, Attr: w.Attr, Action: string(w.Action), Reason: w.Reason}})
}

func (c *warnings) applyOptions() []layerapply.Option {
	return []layerapply.Option{layerapply.WithStrict(c.o.strict), layerapply.WithWarnings(c.add)}
}

// WarningSummary describes [Result.Warnings] in at most n+1 lines: the counts by action,
// then the first n warnings. It returns nil when there were none.
func (r *Result) WarningSummary(n int) []string {
	total := len(r.Warnings) + r.WarningsOmitted
	if total == 0 {
		return nil
	}
	count := map[layerapply.Action]int{}
	for _, w := range r.Warnings {
		count[w.Action]++
	}
	var parts []string
	for _, a := range []struct {
		act        layerapply.Action
		one, other string
	}{
		{layerapply.ActionDropped, "attribute dropped", "attributes dropped"},
		{layerapply.ActionSkipped, "entry skipped", "entries skipped"},
		{layerapply.ActionChanged, "attribute rewritten", "attributes rewritten"},
	} {
		switch c := count[a.act]; c {
		case 0:
		case 1:
			parts = append(parts, "1 "+a.one)
		default:
			parts = append(parts, fmt.Sprintf("%d %s", c, a.other))
		}
	}
	if r.WarningsOmitted > 0 {
		parts = append(parts, fmt.Sprintf("%d more not listed", r.WarningsOmitted))
	}
	lines := []string{"metadata the output cannot hold as given: " + strings.Join(parts, ", ")}
	for i, w := range r.Warnings {
		if i == n {
			lines = append(lines, fmt.Sprintf("... and %d more", total-n))
			break
		}
		lines = append(lines, w.String())
	}
	return lines
}
