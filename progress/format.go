package progress

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// barWidth is the number of cells between the brackets of a TTY bar.
const barWidth = 20

// phaseVerb names what a phase is doing, or has done when complete.
func phaseVerb(p Phase, complete bool) string {
	var ing, ed string
	switch p {
	case PhaseResolve:
		ing, ed = "resolving", "resolved"
	case PhaseDownload:
		ing, ed = "downloading", "downloaded"
	case PhaseLocal:
		ing, ed = "local", "local"
	case PhaseApply:
		ing, ed = "applying", "applied"
	case PhaseFinalize:
		ing, ed = "finalizing", "finalized"
	case PhaseUpload:
		ing, ed = "uploading", "uploaded"
	case PhaseDone:
		ing, ed = "done", "done"
	default:
		ing, ed = string(p), string(p)+" complete"
	}
	if complete {
		return ed
	}
	return ing
}

// shortDigest returns the first 12 hex digits of a digest, or a
// placeholder naming the layer when the digest is empty.
func shortDigest(digest string, layer int) string {
	if digest == "" {
		return "layer " + strconv.Itoa(layer+1)
	}
	if _, hex, ok := strings.Cut(digest, ":"); ok {
		digest = hex
	}
	if len(digest) > 12 {
		digest = digest[:12]
	}
	return digest
}

// seconds formats d as seconds with one decimal.
func seconds(d time.Duration) string {
	return strconv.FormatFloat(d.Seconds(), 'f', 1, 64) + "s"
}

// speed formats a rate in bytes per second.
func speed(bps float64) string {
	return HumanBytes(int64(bps)) + "/s"
}

// percent returns done as a whole percentage of total, clamped to 0..100.
func percent(done, total int64) int {
	p := int(float64(done) / float64(total) * 100)
	return min(max(p, 0), 100)
}

// plainLine formats one line of ModePlain output, without the newline.
func plainLine(e Event) string {
	var b strings.Builder
	if e.Layer >= 0 {
		n := "?"
		if e.Layers > 0 {
			n = strconv.Itoa(e.Layers)
		}
		fmt.Fprintf(&b, "[%d/%s] %s ", e.Layer+1, n, shortDigest(e.Digest, e.Layer))
	}
	b.WriteString(phaseVerb(e.Phase, e.Complete))
	if e.Complete {
		switch {
		case e.Layer < 0 && e.Phase == PhaseResolve:
			if e.Layers > 0 {
				b.WriteString(" " + layerCount(e.Layers))
			}
		case e.Layer >= 0 || e.Done > 0:
			b.WriteString(" " + HumanBytes(e.Done))
		}
		if e.Elapsed > 0 {
			b.WriteString(" in " + seconds(e.Elapsed))
		}
		if e.BytesPerSec > 0 {
			b.WriteString(" (" + speed(e.BytesPerSec) + ")")
		}
		return b.String()
	}
	if e.Layer >= 0 || e.Done > 0 || e.Total > 0 {
		b.WriteString(" " + HumanBytes(e.Done))
		if e.Total > 0 {
			fmt.Fprintf(&b, " / %s (%d%%)", HumanBytes(e.Total), percent(e.Done, e.Total))
		}
	}
	if e.BytesPerSec > 0 {
		b.WriteString(", " + speed(e.BytesPerSec))
	}
	if e.Retries > 0 {
		fmt.Fprintf(&b, ", %s", retries(e))
		if e.Retry != "" {
			b.WriteString(": " + e.Retry)
		}
	}
	return b.String()
}

// retries formats the retry count of an event, "retry 1" or "retry 3".
func retries(e Event) string {
	return "retry " + strconv.Itoa(e.Retries)
}

// ttyStatus is the status column of a TTY layer line.
func ttyStatus(e Event) string {
	switch {
	case e.Phase == PhaseDownload && e.Complete:
		return "Downloaded"
	case e.Phase == PhaseApply && e.Complete:
		return "Done"
	}
	v := phaseVerb(e.Phase, e.Complete)
	if v == "" {
		return "Working"
	}
	return strings.ToUpper(v[:1]) + v[1:]
}

// bar draws a docker-style progress bar, or returns "" when the total is unknown or
// nothing is transferred (a local blob).
func bar(e Event) string {
	filled := barWidth
	switch {
	case e.Phase == PhaseLocal:
		return ""
	case e.Complete:
	case e.Total > 0:
		filled = percent(e.Done, e.Total) * barWidth / 100
	default:
		return ""
	}
	if filled >= barWidth {
		return "[" + strings.Repeat("=", barWidth) + "]"
	}
	return "[" + strings.Repeat("=", filled) + ">" + strings.Repeat(" ", barWidth-filled-1) + "]"
}

// layerCount formats a number of layers, "1 layer" or "n layers".
func layerCount(n int) string {
	if n == 1 {
		return "1 layer"
	}
	return strconv.Itoa(n) + " layers"
}

// Statuses a TTY row shows instead of its phase once the work has failed.
const (
	statusWaiting   = "Waiting"
	statusFailed    = "Failed"
	statusCancelled = "Cancelled"
)

// minName is the fewest digest characters a TTY row's name is shortened to;
// a row that still does not fit drops its speed, then loses its end.
const minName = 4

// row is one layer's line of the TTY display.
type row struct {
	e       Event  // latest event; only Layer is set for a layer not yet started
	started bool   // e came from the layer (else the layer has reported nothing)
	status  string // replaces the phase's status when not empty
}

// rowName returns the name of a layer's row, its digest shortened to at most
// n hex digits; n < 0 means the usual 12.
func rowName(e Event, n int) string {
	if e.Digest == "" {
		name := "layer " + strconv.Itoa(e.Layer+1)
		if n >= 0 && len(name) > n {
			name = "#" + strconv.Itoa(e.Layer+1)
		}
		return name
	}
	name := printable(shortDigest(e.Digest, e.Layer))
	if n >= 0 && len(name) > n {
		name = name[:max(n, 1)]
	}
	return name
}

// line formats r to fit in width columns (no limit when width <= 0). It
// gives up, in this order, the bar, the alignment of the columns, digest
// characters down to minName, the speed and retry count, and only then cuts
// the end: the byte counts stay whole for as long as anything else can go.
func (r row) line(width int) string {
	status, natural := r.status, r.status == ""
	if natural {
		status = ttyStatus(r.e)
	}
	var nums, spd, bars string
	if r.started {
		nums = HumanBytes(r.e.Done)
		if r.e.Total > 0 {
			nums += "/" + HumanBytes(r.e.Total)
		}
		if natural && !r.e.Complete && r.e.BytesPerSec > 0 {
			spd = speed(r.e.BytesPerSec)
		}
		if natural && !r.e.Complete && r.e.Retries > 0 {
			spd = strings.TrimSpace(spd + " (" + retries(r.e) + ")")
		}
		bars = bar(r.e)
	}
	compose := func(name string, pad bool, bars, spd string) string {
		var b strings.Builder
		if pad {
			fmt.Fprintf(&b, "%-12s: %-11s", name, status)
		} else {
			b.WriteString(name + ": " + status)
		}
		for _, s := range []string{bars, nums, spd} {
			if s != "" {
				b.WriteString(" " + s)
			}
		}
		return strings.TrimRight(b.String(), " ")
	}
	full := rowName(r.e, -1)
	if l := compose(full, true, bars, spd); width <= 0 || len(l) <= width {
		return l
	}
	if l := compose(full, true, "", spd); len(l) <= width {
		return l
	}
	for _, spd := range []string{spd, ""} {
		if n := width - len(compose("", false, "", spd)); n >= min(minName, len(full)) {
			return compose(rowName(r.e, n), false, "", spd)
		}
	}
	return truncate(compose(rowName(r.e, minName), false, "", ""), width)
}

// headerLine formats the TTY line above the layers, from the resolve phase
// and the error the work failed with, if any.
func headerLine(e Event, layers int, failure error) string {
	switch {
	case !e.Complete && failure != nil:
		return "Resolving image: stopped"
	case !e.Complete:
		return "Resolving image"
	}
	if e.Layers > 0 {
		layers = e.Layers
	}
	s := "Resolved image: " + layerCount(layers)
	if e.Elapsed > 0 {
		s += " in " + seconds(e.Elapsed)
	}
	return s
}

// footerLine formats the TTY line below the layers, from the image-level
// phases after the layers (finalize and done).
func footerLine(e Event) string {
	v := phaseVerb(e.Phase, e.Complete)
	s := strings.ToUpper(v[:min(1, len(v))]) + v[min(1, len(v)):]
	if !e.Complete && e.Phase != PhaseDone && (e.Done > 0 || e.Total > 0) {
		s += " " + HumanBytes(e.Done)
		if e.Total > 0 {
			s += "/" + HumanBytes(e.Total)
		}
	}
	if (e.Complete || e.Phase == PhaseDone) && e.Elapsed > 0 {
		s += " in " + seconds(e.Elapsed)
	}
	return s
}

// failedStatus returns the status a TTY row shows once the work failed with
// err: a layer that had not started, or had finished downloading and waited
// to be applied, was cancelled; one in the middle of a phase failed (or was
// cancelled, when err says the work was); an applied layer keeps its status.
func failedStatus(r row, err error) string {
	switch {
	case !r.started:
		return statusCancelled
	case r.e.Phase == PhaseApply && r.e.Complete:
		return r.status
	case r.e.Complete, cancelled(err):
		return statusCancelled
	}
	return statusFailed
}

// failedLine formats the line that ends a failed display or log.
func failedLine(err error, applied, layers int) string {
	s := "Failed"
	if cancelled(err) {
		s = "Cancelled"
	}
	if layers > 0 {
		s += fmt.Sprintf(" after applying %d of %s", applied, layerCount(layers))
	}
	return s
}

// printable replaces every byte of s outside printable ASCII with '?', so
// that digests or phase names cannot carry terminal escapes, and so that
// each byte of a line is one column.
func printable(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e {
			return strings.Map(func(r rune) rune {
				if r < 0x20 || r > 0x7e {
					return '?'
				}
				return r
			}, s)
		}
	}
	return s
}

// truncate cuts the printable form of s to at most n columns (at least one).
func truncate(s string, n int) string {
	s = printable(s)
	n = max(n, 1)
	if len(s) <= n {
		return s
	}
	return s[:n]
}
