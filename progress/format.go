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
	case PhaseApply:
		ing, ed = "applying", "applied"
	case PhaseFinalize:
		ing, ed = "finalizing", "finalized"
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
	return b.String()
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

// bar draws a docker-style progress bar, or returns "" when the total is unknown.
func bar(e Event) string {
	filled := barWidth
	switch {
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

// layerLine formats the TTY line of one layer.
func layerLine(e Event) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%-12s: %-11s", shortDigest(e.Digest, e.Layer), ttyStatus(e))
	if s := bar(e); s != "" {
		b.WriteString(" " + s)
	}
	b.WriteString(" " + HumanBytes(e.Done))
	if e.Total > 0 {
		b.WriteString("/" + HumanBytes(e.Total))
	}
	if !e.Complete && e.BytesPerSec > 0 {
		b.WriteString(" " + speed(e.BytesPerSec))
	}
	return b.String()
}

// waitingLine formats the TTY line of a layer that has reported nothing yet.
func waitingLine(layer int) string {
	return fmt.Sprintf("%-12s: Waiting", shortDigest("", layer))
}

// headerLine formats the TTY line above the layers, from the resolve phase.
func headerLine(e Event, layers int) string {
	if !e.Complete {
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
