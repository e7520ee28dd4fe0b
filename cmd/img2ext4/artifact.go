package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/img2ext4/img2ext4"
	"github.com/img2ext4/img2ext4/artifact"
	"github.com/img2ext4/img2ext4/ocifetch"
	"github.com/img2ext4/img2ext4/progress"
	"github.com/spf13/pflag"
)

// registryFlags are the flags of the registry subcommands that say how to reach it.
type registryFlags struct {
	platform      platformValue
	username      string
	passwordStdin bool
	insecure      bool
	registryCA    string
	jobs          int
	retries       int
	retryMaxTime  time.Duration
	quiet         bool
}

func (r *registryFlags) add(fs *pflag.FlagSet) {
	fs.StringVar(&r.username, "username", "", "registry user name (use with --password-stdin)")
	fs.BoolVar(&r.passwordStdin, "password-stdin", false, "read the registry password from standard input")
	fs.BoolVar(&r.insecure, "insecure", false, "allow plain HTTP and unverified TLS for non-loopback registries")
	fs.StringVar(&r.registryCA, "registry-ca", "", "PEM `FILE` with extra CA certificates for the registry")
	fs.IntVar(&r.jobs, "jobs", artifact.DefaultJobs, "chunks to transfer in parallel")
	fs.IntVar(&r.retries, "retries", ocifetch.DefaultRetries, "retry a failed registry request up to `N` times in a row (0 to 100)")
	fs.DurationVar(&r.retryMaxTime, "retry-max-time", ocifetch.DefaultRetryMaxTime, "give up on a registry request that keeps failing for longer than `DURATION`")
	fs.BoolVarP(&r.quiet, "quiet", "q", false, "print nothing but errors and the artifact's reference")
}

func (r *registryFlags) check() error {
	if r.passwordStdin && r.username == "" {
		return errors.New("--password-stdin needs --username")
	}
	if r.username != "" && !r.passwordStdin {
		return errors.New("--username needs --password-stdin (passwords are never taken from the command line)")
	}
	if r.jobs < 1 || r.jobs > 64 {
		return fmt.Errorf("--jobs %d: want 1 to 64", r.jobs)
	}
	if r.retries < 0 || r.retries > 100 {
		return fmt.Errorf("--retries %d: want 0 to 100", r.retries)
	}
	if r.retryMaxTime <= 0 {
		return fmt.Errorf("--retry-max-time %s: want a positive duration", r.retryMaxTime)
	}
	return nil
}

// fetchOptions returns the ocifetch options of the flags, reading the password from stdin.
func (r *registryFlags) fetchOptions(stdin io.Reader) ([]ocifetch.Option, error) {
	opts := []ocifetch.Option{ocifetch.WithInsecure(r.insecure), ocifetch.WithRetries(r.retries), ocifetch.WithRetryMaxTime(r.retryMaxTime)}
	if r.platform.p != nil {
		opts = append(opts, ocifetch.WithPlatform(*r.platform.p))
	}
	if r.registryCA != "" {
		opts = append(opts, ocifetch.WithRegistryCA(r.registryCA))
	}
	if r.passwordStdin {
		b, err := io.ReadAll(io.LimitReader(stdin, 64<<10))
		if err != nil {
			return nil, fmt.Errorf("read password from stdin: %w", err)
		}
		opts = append(opts, ocifetch.WithBasicAuth(r.username, strings.TrimRight(string(b), "\r\n")))
	}
	return opts, nil
}

// parseSub parses a subcommand's flags and wants n arguments; -h prints usage to stdout.
func parseSub(fs *pflag.FlagSet, args []string, n int, usage string, stdout io.Writer) error {
	fs.SetOutput(io.Discard)
	fs.Usage = func() { fmt.Fprintf(stdout, "%s\n\nFlags:\n%s", usage, fs.FlagUsages()) }
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return err
		}
		return usageError{err}
	}
	if fs.NArg() != n {
		return usageError{fmt.Errorf("want %d arguments, got %d", n, fs.NArg())}
	}
	return nil
}

// subFail prints err and returns the exit status: 2 for a usage error or a failed check.
func subFail(ctx context.Context, stderr io.Writer, name string, err error) int {
	return subFailTo(ctx, stderr, nil, name, err)
}

// subFailTo is subFail ending the output of r, when not nil: in JSON mode the error is
// the last object (with its hint), in the other modes the rows that did not finish are
// marked and the error printed below.
func subFailTo(ctx context.Context, stderr io.Writer, r *progress.Renderer, name string, err error) int {
	if errors.Is(err, pflag.ErrHelp) {
		return exitOK
	}
	code := exitFailure
	if errors.As(err, new(usageError)) || errors.As(err, new(*img2ext4.CheckError)) {
		code = exitUsage
	}
	if cause := context.Cause(ctx); ctx.Err() != nil && cause != nil {
		err = cause
	}
	msg, hint := errorText(err)
	if errors.As(err, new(usageError)) {
		hint = strings.TrimSpace(hint + "\nRun 'img2ext4 " + name + " --help' for usage.")
	}
	if r != nil {
		if r.Mode() == progress.ModeJSON {
			err = hintedError{err, strings.TrimSpace(msg + "\n" + hint)}
		}
		r.Fail(err)
		r.Close() // a write error on stderr has nowhere to be reported
		if r.Mode() == progress.ModeJSON {
			return code
		}
	}
	printError(stderr, msg, hint)
	return code
}

// transferProgress returns the renderer of push's (or pull's) --progress MODE, or nil
// for none or --quiet. An unknown mode is a usage error.
func transferProgress(mode string, quiet bool, stderr io.Writer) (*progress.Renderer, error) {
	m, err := progress.ParseMode(mode)
	if err != nil {
		return nil, usageError{fmt.Errorf("--progress %q: want auto, tty, plain, json or none", mode)}
	}
	if quiet || m == progress.ModeNone {
		return nil, nil
	}
	return progress.NewRenderer(stderr, m), nil
}

// finishTransfer ends the output of r with the result: in JSON mode one object of type
// "result" with the members of v, in the other modes (and with no renderer, unless quiet)
// the lines.
func finishTransfer(r *progress.Renderer, stderr io.Writer, quiet bool, v any, lines []string) {
	if r != nil {
		r.Close()
	}
	if r != nil && r.Mode() == progress.ModeJSON {
		b, err := json.Marshal(v)
		if err != nil || len(b) < 2 || b[0] != '{' {
			return // cannot happen: v is a struct of plain fields
		}
		typ := `{"type":"result"`
		if len(b) > 2 {
			typ += ","
		}
		fmt.Fprintf(stderr, "%s%s\n", typ, b[1:])
		return
	}
	if quiet {
		return
	}
	for _, l := range lines {
		fmt.Fprintln(stderr, l)
	}
}

const pushUsage = `Usage: img2ext4 push [flags] IMAGE REGISTRY/REPO[:TAG]

Push the ext4 image file IMAGE to a registry as an OCI artifact (artifactType
` + artifact.ArtifactType + `): 2 MiB zstd chunks, all-zero chunks left out,
chunks the registry already has not uploaded again. Without a TAG the artifact is pushed
by digest only. --subject names the image IMAGE was converted from: the artifact becomes
one of its referrers. The artifact's REPO@DIGEST is printed on standard output.
--progress json writes only JSON objects to standard error, the last one of type
"result" (the artifact, its chunks, what was uploaded and what the registry had).`

// pushResult is the JSON result of push, and what its summary says.
type pushResult struct {
	// Ref is the artifact's REPO@DIGEST, Digest its manifest digest, Tag the tag it
	// was pushed to ("" for none).
	Ref    string `json:"ref"`
	Digest string `json:"digest"`
	Tag    string `json:"tag,omitempty"`
	// Image is the file pushed and Size its size in bytes.
	Image string `json:"image"`
	Size  int64  `json:"size"`
	// Chunks counts the 2 MiB chunks the image was cut into, Holes those of zeros
	// (never uploaded), Blobs the distinct blobs of the others.
	Chunks int `json:"chunks"`
	Holes  int `json:"holes"`
	Blobs  int `json:"blobs"`
	// Uploaded counts the blobs uploaded, UploadedBytes their compressed bytes, Present
	// those the registry had already (skipped).
	Uploaded      int   `json:"uploaded"`
	UploadedBytes int64 `json:"uploaded_bytes"`
	Present       int   `json:"present"`
	// Subject is the digest of the source image's manifest (--subject), and Referrers
	// how the registry lists the artifact among its referrers: "api" or "tag" (the
	// fallback tag).
	Subject   string `json:"subject,omitempty"`
	Referrers string `json:"referrers,omitempty"`
	// Annotations are the manifest's annotations.
	Annotations map[string]string `json:"annotations,omitempty"`
	// Elapsed is the time the push took.
	Elapsed time.Duration `json:"elapsed_ns"`
}

func newPushResult(file string, p *artifact.Pushed, elapsed time.Duration) pushResult {
	res := pushResult{Ref: p.Ref.String(), Digest: p.Ref.DigestStr(), Tag: p.Tag, Image: file, Size: p.Index.Size,
		Chunks: p.Chunks + p.Holes, Holes: p.Holes, Blobs: p.Blobs, Uploaded: p.Uploaded, UploadedBytes: p.UploadedBytes,
		Present: p.Blobs - p.Uploaded, Referrers: p.Referrers, Annotations: p.Descriptor.Annotations, Elapsed: elapsed}
	if p.Referrers != "" {
		res.Subject = p.Descriptor.Annotations[artifact.AnnotationSourceDigest]
	}
	return res
}

// lines is the summary of a push for the text modes.
func (res pushResult) lines() []string {
	to := res.Ref
	if res.Tag != "" {
		to = strings.TrimSuffix(res.Ref, "@"+res.Digest) + ":" + res.Tag + " (" + res.Digest + ")"
	}
	lines := []string{fmt.Sprintf("Pushed %s to %s in %s: %d chunks of 2 MiB, %d holes; %d blobs, %d uploaded (%s), %d already there",
		res.Image, to, res.Elapsed.Round(time.Millisecond), res.Chunks-res.Holes, res.Holes, res.Blobs, res.Uploaded, mib(res.UploadedBytes), res.Present)}
	switch res.Referrers {
	case artifact.ReferrersAPI:
		lines = append(lines, "Listed among the referrers of "+res.Subject+" by the registry's referrers API")
	case artifact.ReferrersTag:
		lines = append(lines, "Listed among the referrers of "+res.Subject+" in the fallback tag sha256-"+strings.TrimPrefix(res.Subject, "sha256:")+" (the registry has no referrers API)")
	}
	return lines
}

func runPush(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	var r registryFlags
	var subject, mode string
	var annotations []string
	fs := pflag.NewFlagSet("img2ext4 push", pflag.ContinueOnError)
	r.add(fs)
	fs.StringVar(&subject, "subject", "", "the source image `REF` IMAGE was converted from (a registry image, oci:DIR, ...)")
	fs.Var(&r.platform, "platform", "platform to pick from a multi-platform --subject (default linux/<host arch>)")
	fs.StringArrayVar(&annotations, "annotation", nil, "add an annotation `KEY=VALUE` to the manifest (repeatable)")
	fs.StringVar(&mode, "progress", "auto", "progress output `MODE`: auto, tty, plain, json or none")
	var rend *progress.Renderer
	fail := func(err error) int {
		if rend == nil && wantsJSON(args) { // a tool reading JSON gets a usage error as JSON too
			rend = progress.NewRenderer(stderr, progress.ModeJSON)
		}
		return subFailTo(ctx, stderr, rend, "push", err)
	}
	if err := parseSub(fs, args, 2, pushUsage, stdout); err != nil {
		return fail(err)
	}
	if err := r.check(); err != nil {
		return fail(usageError{err})
	}
	ann := map[string]string{}
	for _, a := range annotations {
		k, v, ok := strings.Cut(a, "=")
		if !ok || k == "" {
			return fail(usageError{fmt.Errorf("--annotation %q: want KEY=VALUE", a)})
		}
		ann[k] = v
	}
	file, ref := fs.Arg(0), fs.Arg(1)
	if err := ocifetch.CheckReference(ref); err != nil {
		return fail(usageError{err})
	}
	if strings.Contains(ref, "@") {
		return fail(usageError{fmt.Errorf("%s: push to a repository and optionally a tag, not a digest", ref)})
	}
	var err error
	if rend, err = transferProgress(mode, r.quiet, stderr); err != nil {
		return fail(err)
	}
	fetch, err := r.fetchOptions(stdin)
	if err != nil {
		return fail(err)
	}
	opts := []artifact.Option{artifact.WithFetchOptions(fetch...), artifact.WithJobs(r.jobs)}
	if rend != nil {
		opts = append(opts, artifact.WithProgress(rend.Func()))
	}
	if subject != "" {
		so, err := artifact.ResolveSource(ctx, subject, fetch...)
		if err != nil {
			return fail(fmt.Errorf("--subject: %w", err))
		}
		opts = append(opts, so...)
	}
	opts = append(opts, artifact.WithAnnotations(ann))
	start := time.Now()
	p, err := artifact.PushFile(ctx, file, ref, opts...)
	if err != nil {
		return fail(err)
	}
	fmt.Fprintln(stdout, p.Ref.String())
	res := newPushResult(file, p, time.Since(start))
	finishTransfer(rend, stderr, r.quiet, res, res.lines())
	return exitOK
}

const pullUsage = `Usage: img2ext4 pull [flags] REGISTRY/REPO[:TAG|@DIGEST] OUTPUT

Pull an ext4 image artifact pushed by "img2ext4 push" (or --cache-to) into OUTPUT, a
file that appears only when every chunk has been verified (sparse: holes are not
written), or a block device written in place.`

func runPull(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	var r registryFlags
	fs := pflag.NewFlagSet("img2ext4 pull", pflag.ContinueOnError)
	r.add(fs)
	if err := parseSub(fs, args, 2, pullUsage, stdout); err != nil {
		return subFail(ctx, stderr, "pull", err)
	}
	if err := r.check(); err != nil {
		return subFail(ctx, stderr, "pull", usageError{err})
	}
	ref, out := fs.Arg(0), fs.Arg(1)
	if err := ocifetch.CheckReference(ref); err != nil {
		return subFail(ctx, stderr, "pull", usageError{err})
	}
	fetch, err := r.fetchOptions(stdin)
	if err != nil {
		return subFail(ctx, stderr, "pull", err)
	}
	start := time.Now()
	res, err := img2ext4.Pull(ctx, ref, out, artifact.WithFetchOptions(fetch...), artifact.WithJobs(r.jobs))
	if err != nil {
		return subFail(ctx, stderr, "pull", err)
	}
	if !r.quiet {
		a := res.Artifact
		fmt.Fprintf(stderr, "Pulled %s into %s in %s: %s image, %d blobs (%s) verified, %s written\n",
			a.Ref, out, time.Since(start).Round(time.Millisecond), mib(a.Size()), res.Stats.Blobs, mib(res.Stats.Bytes), mib(res.Stats.Written))
		if h := a.Descriptor.Annotations[artifact.AnnotationVerityRootHash]; h != "" {
			fmt.Fprintf(stderr, "Verity root hash %s, salt %s\n", h, a.Descriptor.Annotations[artifact.AnnotationVeritySalt])
		}
	}
	return exitOK
}

// cacheNotes describes what --cache-from and --cache-to did, for the summary.
func cacheNotes(c *img2ext4.Cache) []string {
	if c == nil {
		return nil
	}
	var notes []string
	for _, m := range c.Missed {
		notes = append(notes, "Cache miss: "+m)
	}
	if c.Hit != "" {
		notes = append(notes, "Cache hit: pulled "+c.Hit+" instead of converting")
	}
	if c.Pushed != "" {
		notes = append(notes, fmt.Sprintf("Cache: pushed %s (%d of %d chunk blobs uploaded)", c.Pushed, c.Uploaded, c.Blobs))
	}
	return notes
}

// mib formats a byte count in MiB with one decimal.
func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }
