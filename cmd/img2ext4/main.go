// Command img2ext4 turns a container image into an ext4 filesystem image, a root filesystem
// directory or a flattened tar, with no container engine and no root privileges.
//
//	img2ext4 [flags] SOURCE OUTPUT
//
// SOURCE is a registry reference ("alpine:3.20", "docker://host:5000/app@sha256:…",
// "http://127.0.0.1:5000/app:1"), "oci:DIR[:TAG]", "oci-archive:FILE[:TAG]",
// "docker-archive:FILE[:REF]", "docker-daemon:IMAGE" (read over the engine's API socket),
// or, through skopeo (--exporter), "containers-storage:IMAGE" and skopeo's other transports. OUTPUT is the image file for --format ext4 (the default), a
// directory for --format dir, or a file ("-" for standard output) for --format tar.
package main

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/img2ext4/img2ext4"
	"github.com/img2ext4/img2ext4/cacert"
	"github.com/img2ext4/img2ext4/exporter"
	"github.com/img2ext4/img2ext4/layerapply"
	"github.com/img2ext4/img2ext4/ocifetch"
	"github.com/img2ext4/img2ext4/progress"
	"github.com/img2ext4/img2ext4/store"
	"github.com/spf13/pflag"
)

// platformValue is a pflag.Value for os/arch[/variant].
type platformValue struct{ p *v1.Platform }

func (v *platformValue) String() string {
	if v.p == nil {
		return ""
	}
	return v.p.String()
}

func (v *platformValue) Set(s string) error {
	p, err := v1.ParsePlatform(s)
	if err != nil {
		return err
	}
	if p.OS == "" || p.Architecture == "" {
		return fmt.Errorf("want os/arch[/variant], got %q", s)
	}
	v.p = p
	return nil
}

func (v *platformValue) Type() string { return "os/arch[/variant]" }

// config is the parsed command line.
type config struct {
	format        string
	exporter      string
	platform      platformValue
	allowMismatch bool
	username      string
	passwordStdin bool
	insecure      bool
	registryCA    string
	jobs          int
	retries       int
	retryMaxTime  time.Duration
	limits        layerapply.Limits
	progress      string
	quiet         bool
	version       bool
	tmpDir        string
	blobCache     string
	adds          []string
	configOut     string
	strict        bool
	caCertFiles   []string
	caCerts       []*x509.Certificate
	caStrict      bool
	verity        bool
	verityOut     string
	veritySalt    string
	cacheFrom     []string
	cacheTo       string
	ext4          img2ext4.Ext4Options
	store         string
	storeFallback []string
	source, out   string
}

// usageError marks errors that exit with status 2.
type usageError struct{ error }

func (e usageError) Unwrap() error { return e.error }

// Exit statuses.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

// parse reads the command line. -h and --help print the help to stdout and return
// [pflag.ErrHelp]; every other error is a [usageError].
func parse(args []string, stdout io.Writer) (*config, error) {
	c := &config{}
	fs := pflag.NewFlagSet("img2ext4", pflag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are returned, help goes to stdout
	fs.StringVar(&c.format, "format", "ext4", "output format: ext4, dir or tar")
	c.ext4.Align = img2ext4.DefaultAlign
	fs.Var(sizeValue{&c.ext4.Size}, "size", "ext4: exact image size (e.g. 2G); default: the smallest that fits")
	fs.Var(freeValue{&c.ext4.FreeBytes, &c.ext4.FreePercent, &c.ext4.FreeSet}, "free", "ext4: space left available to users, a size (512M) or a percentage of the content (20%); 0 for the smallest image (default: 64M or 10%, the larger)")
	fs.Var(percentValue{&c.ext4.ReservedPercent}, "reserved", "ext4: blocks reserved for root, a percentage (mke2fs's -m)")
	fs.Var(sizeValue{&c.ext4.Align}, "align", "ext4: round the image size up to a multiple of this, a power of two (4K for none)")
	fs.Uint32Var(&c.ext4.Inodes, "inodes", 0, "ext4: number of inodes (default: mke2fs's ratio)")
	fs.StringVar(&c.ext4.Label, "label", "", "ext4: volume label")
	fs.StringVar(&c.ext4.UUID, "uuid", "", "ext4: filesystem UUID (default: derived from the image digest)")
	fs.BoolVar(&c.ext4.NoJournal, "no-journal", false, "ext4: leave out the journal")
	fs.BoolVar(&c.ext4.ReadOnly, "read-only", false, "ext4: set the read-only feature (the kernel mounts it read-only)")
	fs.StringVar(&c.exporter, "exporter", "auto", "how to fetch the source: native (never runs a program), skopeo (skopeo copy; containers-storage: and other skopeo transports), docker (docker save, for docker-daemon:), or auto (native when it can read the source, else skopeo or docker)")
	fs.Var(&c.platform, "platform", "platform to pick from a multi-platform image (default linux/<host arch>)")
	fs.BoolVar(&c.allowMismatch, "allow-platform-mismatch", false, "convert a single-platform image made for another platform than --platform")
	fs.StringVar(&c.username, "username", "", "registry user name (use with --password-stdin)")
	fs.BoolVar(&c.passwordStdin, "password-stdin", false, "read the registry password from standard input")
	fs.BoolVar(&c.insecure, "insecure", false, "allow plain HTTP and unverified TLS for non-loopback registries")
	fs.StringVar(&c.registryCA, "registry-ca", "", "PEM `FILE` with extra CA certificates for the registry")
	fs.IntVar(&c.jobs, "jobs", 0, "layers to download and to decompress in parallel `N`, 1 to 64 (default: 4 downloads, decompression on every core; a layer decompressed ahead of the download order may add a download)")
	fs.IntVar(&c.retries, "retries", ocifetch.DefaultRetries, "retry a failed registry request up to `N` times in a row (0 to 100)")
	fs.DurationVar(&c.retryMaxTime, "retry-max-time", ocifetch.DefaultRetryMaxTime, "give up on a registry request that keeps failing for longer than `DURATION`")
	addLimitFlags(fs, &c.limits)
	fs.StringVar(&c.progress, "progress", "auto", "progress output `MODE`: auto, tty, plain, json or none")
	fs.BoolVarP(&c.quiet, "quiet", "q", false, "print nothing but errors (--progress none still prints the summary)")
	fs.BoolVar(&c.version, "version", false, "print the version and exit")
	fs.StringVar(&c.tmpDir, "tmpdir", "", "`DIR` for downloaded blobs (default: the system temporary directory)")
	fs.StringVar(&c.blobCache, "blob-cache", "", "keep downloaded blobs by digest in `DIR` and reuse them, verified (default: none)")
	fs.StringArrayVar(&c.adds, "add", nil, "inject a host file or directory, `SRC:DST[:MODE]` (repeatable)")
	fs.StringVar(&c.configOut, "config-out", "", "write the image's launch config (entrypoint, cmd, env, ...) as JSON to `FILE`")
	fs.BoolVar(&c.strict, "strict", false, "fail instead of dropping metadata the output cannot hold as given (escalating capabilities, invalid ACLs, odd attributes, over-long names)")
	fs.StringArrayVar(&c.caCertFiles, "ca-cert", nil, "add the CA certificates in PEM `FILE` to every trust store of the image (repeatable)")
	fs.BoolVar(&c.caStrict, "ca-cert-strict", false, "fail on an expired or not yet valid --ca-cert, or an image keystore it cannot open, instead of warning")
	fs.BoolVar(&c.verity, "verity", false, "ext4: append a dm-verity hash tree after the filesystem (at its size, a multiple of 4096)")
	fs.StringVar(&c.verityOut, "verity-out", "", "ext4: write the dm-verity hash tree to `FILE` instead of appending it (implies --verity)")
	fs.StringArrayVar(&c.cacheFrom, "cache-from", nil, "ext4: pull the image from the registry repository `REF` when it holds one made from the same inputs, instead of converting (repeatable)")
	fs.StringVar(&c.cacheTo, "cache-to", "", "ext4: push the image to the registry repository `REF[:TAG]` as an artifact that --cache-from finds")
	fs.StringVar(&c.veritySalt, "verity-salt", "", "ext4: dm-verity salt, `HEX` or - for none (default: derived from the image digest and ext4 options)")
	fs.StringVar(&c.store, "store", os.Getenv("IMG2EXT4_STORE"), "convert through the artifact store in `DIR` (default $IMG2EXT4_STORE): a repeat is a copy; without OUTPUT, print the stored image's path")
	fs.StringArrayVar(&c.storeFallback, "store-fallback", nil, "a store root `DIR` for new artifacts when --store's filesystem lacks the space (repeatable)")
	fs.Usage = func() { fmt.Fprint(stdout, helpText(fs)) }
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return nil, err
		}
		return nil, usageError{err}
	}
	if c.version {
		return c, nil
	}
	switch {
	case fs.NArg() == 1 && c.store != "":
		c.source = fs.Arg(0) // the stored image's path is printed
	case fs.NArg() != 2:
		return nil, usageError{fmt.Errorf("want SOURCE and OUTPUT, got %d arguments", fs.NArg())}
	default:
		c.source, c.out = fs.Arg(0), fs.Arg(1)
		if c.out == "" {
			return nil, usageError{errors.New("empty OUTPUT path")}
		}
	}
	if _, err := exporter.ParseMode(c.exporter); err != nil {
		return nil, usageError{fmt.Errorf("--exporter %q: want auto, native, docker or skopeo", c.exporter)}
	}
	if err := ocifetch.CheckReference(c.source); err != nil && !(errors.Is(err, ocifetch.ErrUnsupportedTransport) && c.exporter != "native") {
		return nil, usageError{err} // a transport ocifetch does not read is the fallback exporters'
	}
	if len(c.storeFallback) > 0 && c.store == "" {
		return nil, usageError{errors.New("--store-fallback needs --store")}
	}
	if c.store != "" && c.format == "dir" {
		return nil, usageError{errors.New("--store keeps ext4 images and tars, not --format dir")}
	}
	if c.store != "" && c.out == "-" {
		return nil, usageError{errors.New("--store writes OUTPUT as a file, not - (omit OUTPUT to print the stored file's path)")}
	}
	if _, err := img2ext4.ParseFormat(c.format); err != nil {
		return nil, usageError{err}
	}
	if _, err := progress.ParseMode(c.progress); err != nil {
		return nil, usageError{err}
	}
	if c.passwordStdin && c.username == "" {
		return nil, usageError{errors.New("--password-stdin needs --username")}
	}
	if c.username != "" && !c.passwordStdin {
		return nil, usageError{errors.New("--username needs --password-stdin (passwords are never taken from the command line)")}
	}
	if fs.Changed("jobs") && (c.jobs < 1 || c.jobs > 64) {
		return nil, usageError{fmt.Errorf("--jobs %d: want 1 to 64", c.jobs)}
	}
	if err := checkLimits(c.limits); err != nil {
		return nil, usageError{err}
	}
	if c.retries < 0 || c.retries > 100 {
		return nil, usageError{fmt.Errorf("--retries %d: want 0 to 100", c.retries)}
	}
	if c.retryMaxTime <= 0 {
		return nil, usageError{fmt.Errorf("--retry-max-time %s: want a positive duration", c.retryMaxTime)}
	}
	for _, a := range c.adds {
		if _, err := img2ext4.ParseAdd(a); err != nil {
			return nil, usageError{err}
		}
	}
	for _, f := range c.caCertFiles {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, usageError{fmt.Errorf("--ca-cert: %w", err)}
		}
		certs, err := cacert.ParsePEM(b)
		if err != nil {
			return nil, usageError{fmt.Errorf("--ca-cert %s: %w", f, err)}
		}
		c.caCerts = append(c.caCerts, certs...)
	}
	if c.caStrict && len(c.caCertFiles) == 0 {
		return nil, usageError{errors.New("--ca-cert-strict needs --ca-cert")}
	}
	if c.format != "ext4" {
		var ext4Only []string
		fs.Visit(func(f *pflag.Flag) {
			if strings.HasPrefix(f.Usage, "ext4: ") {
				ext4Only = append(ext4Only, "--"+f.Name)
			}
		})
		if len(ext4Only) > 0 {
			return nil, usageError{fmt.Errorf("%s only apply to --format ext4, not %s", strings.Join(ext4Only, ", "), c.format)}
		}
	}
	if a := c.ext4.Align; a < 4096 || a&(a-1) != 0 {
		return nil, usageError{fmt.Errorf("--align %s: want a power of two of at least 4K (4K for no rounding)", formatSize(a))}
	}
	if err := c.ext4.Validate(); err != nil {
		return nil, usageError{err}
	}
	if c.veritySalt != "" && !c.verity && c.verityOut == "" {
		return nil, usageError{errors.New("--verity-salt needs --verity or --verity-out")}
	}
	if c.veritySalt != "" {
		if _, err := img2ext4.ParseVeritySalt(c.veritySalt); err != nil {
			return nil, usageError{fmt.Errorf("--verity-salt: %w", err)}
		}
	}
	if c.out == "-" && c.format != "tar" {
		return nil, usageError{errors.New("OUTPUT - (stdout) needs --format tar")}
	}
	return c, nil
}

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if cmd, rest, ok := subcommand(args); ok {
		return cmd(ctx, rest, stdin, stdout, stderr)
	}
	c, err := parse(args, stdout)
	if errors.Is(err, pflag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		msg, hint := errorText(err)
		if wantsJSON(args) { // a tool reading JSON gets the usage error as JSON too
			r := progress.NewRenderer(stderr, progress.ModeJSON)
			r.Fail(errors.New(strings.TrimSpace(msg + "\n" + hint)))
			r.Close()
			return exitUsage
		}
		printError(stderr, msg, hint)
		fmt.Fprintln(stderr, "Run 'img2ext4 --help' for usage.")
		return exitUsage
	}
	if c.version {
		fmt.Fprint(stdout, versionText())
		return exitOK
	}
	fetch := []ocifetch.Option{ocifetch.WithInsecure(c.insecure), ocifetch.WithAllowPlatformMismatch(c.allowMismatch),
		ocifetch.WithRetries(c.retries), ocifetch.WithRetryMaxTime(c.retryMaxTime)}
	if c.platform.p != nil {
		fetch = append(fetch, ocifetch.WithPlatform(*c.platform.p))
	}
	if c.jobs > 0 {
		fetch = append(fetch, ocifetch.WithJobs(c.jobs))
	}
	if c.registryCA != "" {
		fetch = append(fetch, ocifetch.WithRegistryCA(c.registryCA))
	}
	if c.blobCache != "" {
		fetch = append(fetch, ocifetch.WithBlobCache(c.blobCache))
	}
	mode, _ := progress.ParseMode(c.progress)
	if c.quiet {
		mode = progress.ModeNone
	}
	var r *progress.Renderer
	if mode != progress.ModeNone {
		r = progress.NewRenderer(stderr, mode)
	}
	// fail ends the output with err: in JSON mode as the renderer's last object, otherwise
	// printed below the progress, which shows the rows that did not finish. It returns the
	// exit status: a failed check of the command line's inputs is a usage error.
	fail := func(err error) int {
		code := exitFailure
		if errors.As(err, new(*img2ext4.CheckError)) {
			code = exitUsage
		}
		if cause := context.Cause(ctx); ctx.Err() != nil && cause != nil {
			err = cause // the signal, not the operation it interrupted
		}
		msg, hint := errorText(err)
		if r == nil {
			printError(stderr, msg, hint)
			return code
		}
		if r.Mode() == progress.ModeJSON && hint != "" {
			err = hintedError{err, msg + "\n" + hint}
		}
		r.Fail(err)
		r.Close() // a write error on stderr has nowhere to be reported
		if r.Mode() != progress.ModeJSON {
			printError(stderr, msg, hint)
		}
		return code
	}
	if c.passwordStdin {
		b, err := io.ReadAll(io.LimitReader(stdin, 64<<10))
		if err != nil {
			return fail(fmt.Errorf("read password from stdin: %w", err))
		}
		fetch = append(fetch, ocifetch.WithBasicAuth(c.username, strings.TrimRight(string(b), "\r\n")))
	}
	opts := []img2ext4.Option{img2ext4.WithFormat(img2ext4.Format(c.format)), img2ext4.WithFetchOptions(fetch...), img2ext4.WithTempDir(c.tmpDir),
		img2ext4.WithExporter(exporter.Mode(c.exporter)),
		img2ext4.WithStrict(c.strict), img2ext4.WithLimits(c.limits)}
	if c.jobs > 0 {
		opts = append(opts, img2ext4.WithJobs(c.jobs))
	}
	if c.configOut != "" {
		opts = append(opts, img2ext4.WithLaunchConfig(c.configOut))
	}
	if c.format == "ext4" {
		opts = append(opts, img2ext4.WithExt4(c.ext4))
	}
	if c.verity || c.verityOut != "" {
		v := img2ext4.VerityOptions{Out: c.verityOut}
		if c.veritySalt != "" {
			v.Salt, _ = img2ext4.ParseVeritySalt(c.veritySalt)
		}
		opts = append(opts, img2ext4.WithVerity(v))
	}
	if len(c.cacheFrom) > 0 {
		opts = append(opts, img2ext4.WithCacheFrom(c.cacheFrom...))
	}
	if c.cacheTo != "" {
		opts = append(opts, img2ext4.WithCacheTo(c.cacheTo))
	}
	if r != nil {
		opts = append(opts, img2ext4.WithProgress(r.Func()))
	}
	for _, s := range c.adds {
		a, _ := img2ext4.ParseAdd(s)
		opts = append(opts, img2ext4.WithAdd(a))
	}
	if len(c.caCerts) > 0 {
		opts = append(opts, img2ext4.WithCACerts(c.caCerts...), img2ext4.WithCACertStrict(c.caStrict))
	}
	start := time.Now()
	var res *img2ext4.Result
	var art *store.Artifact
	switch {
	case c.store != "":
		res, art, err = convertStored(ctx, c, opts)
	case c.out == "-":
		res, err = img2ext4.ConvertTar(ctx, c.source, stdout, opts...)
	default:
		res, err = img2ext4.Convert(ctx, c.source, c.out, opts...)
	}
	if err != nil {
		return fail(err)
	}
	if art != nil && c.out == "" {
		c.out = art.Path(img2ext4.ArtifactImage)
		fmt.Fprintln(stdout, c.out)
	}
	// The renderer ends the output with the summary: lines, or the JSON result object.
	switch {
	case r != nil:
		r.Finish(summary(c, res, time.Since(start)))
		r.Close()
	case !c.quiet: // --progress none: no progress, but the summary
		fmt.Fprintln(stderr, summary(c, res, time.Since(start)))
	}
	return exitOK
}

// wantsJSON reports whether args ask for --progress json without --quiet, looking only at
// those two flags, for when the command line as a whole does not parse.
func wantsJSON(args []string) bool {
	mode, quiet := "", false
	for i, a := range args {
		switch {
		case a == "--":
			return mode == "json" && !quiet
		case a == "--progress" && i+1 < len(args):
			mode = args[i+1]
		case strings.HasPrefix(a, "--progress="):
			mode = strings.TrimPrefix(a, "--progress=")
		case a == "-q" || a == "--quiet":
			quiet = true
		}
	}
	m, err := progress.ParseMode(mode)
	return err == nil && m == progress.ModeJSON && !quiet
}

// hintedError is an error whose message has the hint appended, for the JSON error object.
type hintedError struct {
	err error
	msg string
}

func (e hintedError) Error() string { return e.msg }
func (e hintedError) Unwrap() error { return e.err }

// errorText returns the message of err, without a package prefix, and a hint when the
// command line can fix it.
func errorText(err error) (msg, hint string) {
	msg = strings.TrimPrefix(err.Error(), "img2ext4: ")
	hint = limitHint(err)
	var pe *ocifetch.PlatformError
	if errors.As(err, &pe) {
		if pe.Index {
			hint = "Pick one of the platforms offered with --platform OS/ARCH[/VARIANT]."
		} else {
			hint = "Use --allow-platform-mismatch to convert it anyway, or --platform for the platform it is for."
		}
	}
	if errors.Is(err, ocifetch.ErrUnsupportedTransport) {
		hint = "--exporter auto or skopeo reads it through skopeo."
	}
	var fe *img2ext4.FormatError
	if errors.As(err, &fe) {
		hint = fmt.Sprintf("A %s takes --format %s only.", fe.Output, fe.Want)
	}
	return msg, hint
}

// printError prints an error's message to stderr behind one "img2ext4: " prefix, and the
// hint, if any, on the next line.
func printError(stderr io.Writer, msg, hint string) {
	fmt.Fprintf(stderr, "img2ext4: %s\n", msg)
	if hint != "" {
		fmt.Fprintln(stderr, hint)
	}
}

// summary describes a finished conversion for the final lines or JSON object.
func summary(c *config, res *img2ext4.Result, elapsed time.Duration) progress.Summary {
	s := progress.Summary{Digest: res.Digest.String(), Platform: res.Platform.String(), Layers: res.Layers,
		Output: c.out, Format: c.format, Filesystem: filesystem(res), Elapsed: elapsed}
	if !res.Skipped.Zero() {
		s.Warnings = append(s.Warnings, res.Skipped.String())
	}
	if ws := res.WarningSummary(5); len(ws) > 0 {
		ws[0] += " (each one in --progress json; --strict fails instead)"
		s.Warnings = append(s.Warnings, ws...)
	}
	if res.CACerts != nil {
		s.Notes = append(s.Notes, res.CACerts.Summary()...)
		s.Warnings = append(s.Warnings, res.CACerts.Warnings...)
		s.CACerts = res.CACerts
	}
	s.Notes = append(s.Notes, cacheNotes(res.Cache)...)
	if res.Cache != nil {
		s.Cache = res.Cache
	}
	if v := res.Verity; v != nil {
		s.Notes = append(s.Notes, fmt.Sprintf("Verity: root hash %s, salt %s, %d data blocks, hash tree in %s at offset %d", v.RootHash, v.Salt, v.DataBlocks, v.HashFile, v.HashOffset),
			"Open with: "+v.Open)
		s.Verity = v
	}
	return s
}

// filesystem returns the space and inodes of an ext4 result, or nil for other formats.
func filesystem(res *img2ext4.Result) *progress.Filesystem {
	st := res.Filesystem
	if st == nil {
		return nil
	}
	return &progress.Filesystem{Size: st.Size, Used: st.Used(), Free: int64(st.FreeBlocks) * int64(st.BlockSize),
		Available: st.Available(), Inodes: st.Inodes, FreeInodes: st.FreeInodes}
}

func main() {
	ctx, stop := notifySignals(context.Background())
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(exitStatus(ctx, code))
}
