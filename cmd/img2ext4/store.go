package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/img2ext4/img2ext4"
	"github.com/img2ext4/img2ext4/store"
	"github.com/spf13/pflag"
)

// openStore opens the store of --store and --store-fallback.
func openStore(c *config) (*store.Store, error) {
	return img2ext4.OpenStore(c.store, store.WithFallback(c.storeFallback...))
}

// convertStored converts c.source through the store: into OUTPUT when given, else
// returning the artifact whose path is printed.
func convertStored(ctx context.Context, c *config, opts []img2ext4.Option) (*img2ext4.Result, *store.Artifact, error) {
	s, err := openStore(c)
	if err != nil {
		return nil, nil, err
	}
	if c.out == "" {
		return img2ext4.ConvertStored(ctx, s, c.source, opts...)
	}
	res, err := img2ext4.Convert(ctx, c.source, c.out, append(opts, img2ext4.WithStore(s))...)
	return res, nil, err
}

const storeHelp = `Usage:
  img2ext4 store ls      [--json] --store DIR
  img2ext4 store inspect [--json] --store DIR KEY
  img2ext4 store rm      --store DIR KEY...
  img2ext4 store prune   [--max-size SIZE] [--older-than DURATION] [--json] --store DIR
  img2ext4 store verify  [--json] --store DIR

Manage the artifact store that "img2ext4 --store DIR SOURCE [OUTPUT]" converts into.
ls lists the artifacts, most recently used first; inspect prints one artifact's record
(its key inputs, files, sizes and content digest); rm removes artifacts; prune removes
the least recently used artifacts beyond --max-size of disk space and those unused for
longer than --older-than (e.g. 72h), and what killed conversions left behind, then the
blobs of the store's blob cache by the same bounds, counted on their own; verify
reads every artifact and compares it with its record (exit status 1 when one differs).
KEY may be shortened to a unique prefix of its hex digits. --json prints JSON for scripts.
`

// runStore is "img2ext4 store SUBCOMMAND ...".
func runStore(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) int {
	usage := func(err error) int {
		fmt.Fprintf(stderr, "img2ext4 store: %v\nRun 'img2ext4 store --help' for usage.\n", err)
		return exitUsage
	}
	if len(args) == 0 {
		return usage(errors.New("want a subcommand: ls, inspect, rm, prune or verify"))
	}
	sub := args[0]
	if sub == "-h" || sub == "--help" || sub == "help" {
		fmt.Fprint(stdout, storeHelp)
		return exitOK
	}
	c := &config{}
	var asJSON bool
	var maxSize int64
	var olderThan time.Duration
	fs := pflag.NewFlagSet("img2ext4 store "+sub, pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&c.store, "store", os.Getenv("IMG2EXT4_STORE"), "the store `DIR` (default $IMG2EXT4_STORE)")
	fs.StringArrayVar(&c.storeFallback, "store-fallback", nil, "a fallback store root `DIR` (repeatable)")
	fs.BoolVar(&asJSON, "json", false, "print JSON")
	want := 0 // arguments after the flags; -1 for one or more
	switch sub {
	case "ls", "verify":
	case "inspect":
		want = 1
	case "rm":
		want = -1
	case "prune":
		fs.Var(sizeValue{&maxSize}, "max-size", "keep at most `SIZE` of disk space, the most recently used")
		fs.DurationVar(&olderThan, "older-than", 0, "remove artifacts unused for longer than `DURATION`")
	default:
		return usage(fmt.Errorf("unknown subcommand %q (want ls, inspect, rm, prune or verify)", sub))
	}
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			fmt.Fprint(stdout, storeHelp)
			return exitOK
		}
		return usage(err)
	}
	switch {
	case c.store == "":
		return usage(errors.New("--store DIR (or IMG2EXT4_STORE) is required"))
	case want == -1 && fs.NArg() == 0:
		return usage(fmt.Errorf("%s wants one or more KEYs", sub))
	case want >= 0 && fs.NArg() != want:
		return usage(fmt.Errorf("%s wants %d arguments, got %d", sub, want, fs.NArg()))
	case olderThan < 0:
		return usage(fmt.Errorf("--older-than %s: want a positive duration", olderThan))
	}
	s, err := openStore(c)
	if err != nil {
		fmt.Fprintf(stderr, "img2ext4 store: %v\n", err)
		return exitFailure
	}
	out := func(v any) int {
		b, _ := json.MarshalIndent(v, "", "  ")
		fmt.Fprintln(stdout, string(b))
		return exitOK
	}
	failed := func(err error) int {
		fmt.Fprintf(stderr, "img2ext4 store %s: %v\n", sub, err)
		return exitFailure
	}
	switch sub {
	case "ls":
		as, err := s.List(ctx)
		if err != nil {
			return failed(err)
		}
		if asJSON {
			list := make([]artifactJSON, 0, len(as))
			for _, a := range as {
				list = append(list, toJSON(a, false))
			}
			return out(list)
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "KEY\tFORMAT\tSIZE\tON DISK\tLAST USE\tSOURCE")
		for _, a := range as {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", a.Key.Hex()[:12], a.Inputs.Format, humanSize(a.Size), humanSize(a.Allocated),
				a.LastUse.Local().Format(time.DateTime), a.Inputs.Source)
		}
		tw.Flush()
		return exitOK
	case "inspect":
		a, err := findArtifact(ctx, s, fs.Arg(0))
		if err != nil {
			return failed(err)
		}
		j := toJSON(a, true)
		if asJSON {
			return out(j)
		}
		fmt.Fprintf(stdout, "key:       %s\npath:      %s\nsize:      %d (%d on disk)\ndigest:    %s\ncreated:   %s\nlast use:  %s\nsource:    %s\nplatform:  %s\nformat:    %s\nversion:   %s\n",
			a.Key, j.Path, a.Size, a.Allocated, a.Digest, a.Created.Local().Format(time.RFC3339), a.LastUse.Local().Format(time.RFC3339),
			a.Inputs.Source, a.Inputs.Platform, a.Inputs.Format, a.Inputs.Version)
		for _, k := range sortedKeys(a.Inputs.Options) {
			fmt.Fprintf(stdout, "option:    %s=%s\n", k, a.Inputs.Options[k])
		}
		for _, k := range sortedKeys(a.Inputs.Files) {
			fmt.Fprintf(stdout, "input:     %s %s\n", k, a.Inputs.Files[k])
		}
		for _, f := range a.Files {
			fmt.Fprintf(stdout, "file:      %s %d %s\n", f.Name, f.Size, f.Digest)
		}
		return exitOK
	case "rm":
		code := exitOK
		for _, k := range fs.Args() {
			a, err := findArtifact(ctx, s, k)
			if err == nil {
				err = s.Remove(ctx, a.Key)
			}
			if err != nil {
				code = failed(err)
				continue
			}
			if !asJSON {
				fmt.Fprintf(stdout, "removed %s\n", a.Key)
			}
		}
		return code
	case "prune":
		rep, err := s.Prune(ctx, store.PruneOptions{MaxSize: maxSize, OlderThan: olderThan})
		if err != nil {
			return failed(err)
		}
		if asJSON {
			type pruneJSON struct {
				Removed   []artifactJSON         `json:"removed"`
				Kept      int                    `json:"kept"`
				KeptBytes int64                  `json:"kept_bytes"`
				Freed     int64                  `json:"freed"`
				Busy      int                    `json:"busy"`
				Stale     int                    `json:"stale"`
				Blobs     *store.BlobPruneReport `json:"blobs,omitempty"`
			}
			j := pruneJSON{Removed: []artifactJSON{}, Kept: rep.Kept, KeptBytes: rep.KeptBytes, Freed: rep.Freed, Busy: rep.Busy, Stale: rep.Stale, Blobs: rep.Blobs}
			for _, a := range rep.Removed {
				j.Removed = append(j.Removed, toJSON(a, false))
			}
			return out(j)
		}
		for _, a := range rep.Removed {
			fmt.Fprintf(stdout, "removed %s (%s)\n", a.Key, humanSize(a.Allocated))
		}
		fmt.Fprintf(stdout, "freed %s; kept %d artifacts (%s)", humanSize(rep.Freed), rep.Kept, humanSize(rep.KeptBytes))
		if rep.Busy > 0 {
			fmt.Fprintf(stdout, ", %d in use", rep.Busy)
		}
		if rep.Stale > 0 {
			fmt.Fprintf(stdout, "; removed %d leftovers of killed runs", rep.Stale)
		}
		if b := rep.Blobs; b != nil {
			fmt.Fprintf(stdout, "; blob cache: removed %d blobs (%s)", b.Removed, humanSize(b.Freed))
		}
		fmt.Fprintln(stdout)
		return exitOK
	default: // verify
		rep, err := s.Verify(ctx)
		if err != nil {
			return failed(err)
		}
		if asJSON {
			out(rep)
		} else {
			for _, p := range rep.Problems {
				fmt.Fprintf(stdout, "BAD %s: %s\n", p.Path, p.Err)
			}
			fmt.Fprintf(stdout, "checked %d artifacts (%s), %d bad\n", rep.Checked, humanSize(rep.Bytes), len(rep.Problems))
		}
		if !rep.OK() {
			return exitFailure
		}
		return exitOK
	}
}

// artifactJSON is an artifact as --json prints it.
type artifactJSON struct {
	Key       store.Key       `json:"key"`
	Path      string          `json:"path"`
	Dir       string          `json:"dir"`
	Size      int64           `json:"size"`
	Allocated int64           `json:"allocated"`
	Digest    string          `json:"digest"`
	Created   time.Time       `json:"created"`
	LastUse   time.Time       `json:"last_use"`
	Inputs    store.Inputs    `json:"inputs"`
	Files     []store.File    `json:"files,omitempty"`
	Result    json.RawMessage `json:"result,omitempty"`
}

func toJSON(a *store.Artifact, full bool) artifactJSON {
	j := artifactJSON{Key: a.Key, Path: a.Path(img2ext4.ArtifactImage), Dir: a.Dir, Size: a.Size, Allocated: a.Allocated,
		Digest: a.Digest, Created: a.Created, LastUse: a.LastUse, Inputs: a.Inputs}
	if full {
		j.Files, j.Result = a.Files, a.Meta
	}
	return j
}

// findArtifact returns the artifact whose key is, or starts with, k.
func findArtifact(ctx context.Context, s *store.Store, k string) (*store.Artifact, error) {
	hex := strings.TrimPrefix(k, "sha256:")
	if hex == "" {
		return nil, errors.New("empty key")
	}
	as, err := s.List(ctx)
	if err != nil {
		return nil, err
	}
	var found *store.Artifact
	for _, a := range as {
		if strings.HasPrefix(a.Key.Hex(), hex) {
			if found != nil {
				return nil, fmt.Errorf("%s names more than one artifact; give more digits", k)
			}
			found = a
		}
	}
	if found == nil {
		return nil, fmt.Errorf("%w %s", store.ErrNotFound, k)
	}
	return found, nil
}

func sortedKeys(m map[string]string) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// humanSize writes n in binary units with one decimal.
func humanSize(n int64) string {
	if n < 1024 {
		return fmt.Sprintf("%d B", n)
	}
	f, u := float64(n)/1024, 0
	for f >= 1024 && u < 4 {
		f /= 1024
		u++
	}
	return fmt.Sprintf("%.1f %ciB", f, "KMGTP"[u])
}
