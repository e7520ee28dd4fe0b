package progress

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Summary describes a finished conversion, as [Renderer.Finish] writes it: the last
// object of [ModeJSON], or the last lines of the other modes.
type Summary struct {
	// Digest is the digest of the image manifest that was converted.
	Digest string `json:"digest"`
	// Platform is the image's platform, os/arch[/variant].
	Platform string `json:"platform"`
	// Layers is the number of layers applied.
	Layers int `json:"layers"`
	// Output is where the result was written: a path, or "-" for standard output.
	Output string `json:"output"`
	// Format is the output format: "ext4", "dir" or "tar".
	Format string `json:"format"`
	// Filesystem describes an ext4 image, or is nil for other formats. Its fields appear
	// at the top level of the JSON object, and only when it is set.
	*Filesystem
	// Notes are further lines about the result, shown after the filesystem line in the
	// text modes (for instance what the CA certificate step changed); JSON leaves them out.
	Notes []string `json:"-"`
	// CACerts is what the CA certificate step changed (img2ext4's Result.CACerts, a
	// *cacert.Report), or nil; JSON shows it as "ca_certs".
	CACerts any `json:"ca_certs,omitempty"`
	// Verity is the dm-verity hash tree made (img2ext4's Result.Verity), or nil; JSON
	// shows it as "verity".
	Verity any `json:"verity,omitempty"`
	// Cache is what the registry cache did (img2ext4's Result.Cache: the key, the
	// artifact pulled instead of converting, the one pushed), or nil; JSON shows it as
	// "cache".
	Cache any `json:"cache,omitempty"`
	// Warnings are things the user should know about the result, one sentence each
	// (for instance what a directory output could not restore without root).
	Warnings []string `json:"warnings,omitempty"`
	// Elapsed is the time the whole conversion took.
	Elapsed time.Duration `json:"elapsed_ns"`
}

// Filesystem is the space and inode use of a finished ext4 image, as df would show it
// inside the mounted image.
type Filesystem struct {
	// Size is the size of the image in bytes.
	Size int64 `json:"size"`
	// Used is the number of bytes in use (the size less the free blocks).
	Used int64 `json:"used"`
	// Free is the number of bytes in free blocks, including those reserved for root
	// and for the kernel.
	Free int64 `json:"free"`
	// Available is the number of bytes an ordinary user can write, as df reports it.
	Available int64 `json:"available"`
	// Inodes is the number of inodes; FreeInodes of them are free.
	Inodes uint64 `json:"inodes"`
	// FreeInodes is the number of inodes not in use.
	FreeInodes uint64 `json:"inodes_free"`
}

// jsonEvent is how [ModeJSON] writes an [Event]: its fields, after a type.
type jsonEvent struct {
	Type string `json:"type"`
	Event
}

// jsonResult is how [ModeJSON] writes a [Summary].
type jsonResult struct {
	Type string `json:"type"`
	Summary
}

// jsonError is how [ModeJSON] writes the error given to [Renderer.Fail].
type jsonError struct {
	Type string `json:"type"`
	// Error is the error's message.
	Error string `json:"error"`
	// Cancelled is true when the work stopped because its context was cancelled.
	Cancelled bool `json:"cancelled,omitempty"`
}

// The values of the "type" member of every [ModeJSON] line.
const (
	jsonTypeProgress = "progress"
	jsonTypeWarning  = "warning"
	jsonTypeResult   = "result"
	jsonTypeError    = "error"
)

// cancelled reports whether err means that the work was cancelled rather than failed.
func cancelled(err error) bool { return errors.Is(err, context.Canceled) }

// String returns s as the lines that end [ModeTTY] output, without the last
// newline: for a program that shows no progress but still tells what it wrote.
func (s Summary) String() string {
	lines := summaryLines(s)
	for i, l := range lines {
		lines[i] = printable(l)
	}
	return strings.Join(lines, "\n")
}

// summaryLines formats s as the closing lines of [ModeTTY] and [ModePlain].
func summaryLines(s Summary) []string {
	var b strings.Builder
	b.WriteString("Wrote " + s.Format)
	if s.Output == "-" {
		b.WriteString(" to standard output")
	} else {
		b.WriteString(" " + s.Output)
	}
	var what []string
	if s.Digest != "" {
		what = append(what, s.Digest)
	}
	if s.Platform != "" {
		what = append(what, s.Platform)
	}
	what = append(what, layerCount(s.Layers))
	b.WriteString(" (" + strings.Join(what, ", ") + ")")
	if s.Elapsed > 0 {
		b.WriteString(" in " + seconds(s.Elapsed))
	}
	lines := []string{b.String()}
	if fs := s.Filesystem; fs != nil {
		lines = append(lines, fmt.Sprintf("Filesystem: %s, %s used, %s available (%s free), %s of %s inodes used",
			HumanBytes(fs.Size), HumanBytes(fs.Used), HumanBytes(fs.Available), HumanBytes(fs.Free),
			strconv.FormatUint(fs.Inodes-min(fs.FreeInodes, fs.Inodes), 10), strconv.FormatUint(fs.Inodes, 10)))
	}
	lines = append(lines, s.Notes...)
	for _, w := range s.Warnings {
		lines = append(lines, "Warning: "+w)
	}
	return lines
}
