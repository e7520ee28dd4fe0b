// Command img2ext4 turns a container image into an ext4 filesystem image, a root filesystem
// directory or a flattened tar, with no container engine and no root privileges.
//
//	img2ext4 [flags] SOURCE OUTPUT
//
// SOURCE is a registry reference ("alpine:3.20", "docker://host:5000/app@sha256:…",
// "http://127.0.0.1:5000/app:1"), "oci:DIR[:TAG]", "oci-archive:FILE[:TAG]" or
// "docker-archive:FILE[:REF]". OUTPUT is the image file for --format ext4 (the default), a
// directory for --format dir, or a file ("-" for standard output) for --format tar.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/img2ext4/img2ext4"
	"github.com/img2ext4/img2ext4/ocifetch"
	"github.com/img2ext4/img2ext4/progress"
	"github.com/spf13/pflag"
)

// version is set at build time with -ldflags "-X main.version=…"; otherwise the module
// version is used.
var version = ""

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
	platform      platformValue
	username      string
	passwordStdin bool
	insecure      bool
	registryCA    string
	jobs          int
	progress      string
	quiet         bool
	version       bool
	tmpDir        string
	adds          []string
	configOut     string
	ext4          img2ext4.Ext4Options
	source, out   string
}

// usageError marks errors that exit with status 2.
type usageError struct{ error }

func parse(args []string, stderr io.Writer) (*config, error) {
	c := &config{}
	fs := pflag.NewFlagSet("img2ext4", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.format, "format", "ext4", "output format: ext4, dir or tar")
	c.ext4.Align = img2ext4.DefaultAlign
	fs.Var(sizeValue{&c.ext4.Size}, "size", "ext4: exact image size (e.g. 2G); default: the smallest that fits")
	fs.Var(freeValue{&c.ext4.FreeBytes, &c.ext4.FreePercent}, "free", "ext4: extra free space, a size (512M) or a percentage of the content (20%)")
	fs.Var(sizeValue{&c.ext4.Align}, "align", "ext4: round the image size up to a multiple of this (default 2M; 4096 for none)")
	fs.Uint32Var(&c.ext4.Inodes, "inodes", 0, "ext4: number of inodes (default: mke2fs's ratio)")
	fs.StringVar(&c.ext4.Label, "label", "", "ext4: volume label")
	fs.StringVar(&c.ext4.UUID, "uuid", "", "ext4: filesystem UUID (default: derived from the image digest)")
	fs.BoolVar(&c.ext4.NoJournal, "no-journal", false, "ext4: leave out the journal")
	fs.BoolVar(&c.ext4.ReadOnly, "read-only", false, "ext4: set the read-only feature (the kernel mounts it read-only)")
	fs.Var(&c.platform, "platform", "platform to pick from a multi-platform image (default linux/<host arch>)")
	fs.StringVar(&c.username, "username", "", "registry user name (use with --password-stdin)")
	fs.BoolVar(&c.passwordStdin, "password-stdin", false, "read the registry password from standard input")
	fs.BoolVar(&c.insecure, "insecure", false, "allow plain HTTP and unverified TLS for non-loopback registries")
	fs.StringVar(&c.registryCA, "registry-ca", "", "PEM file with extra CA certificates for the registry")
	fs.IntVar(&c.jobs, "jobs", 4, "layer blobs to download in parallel")
	fs.StringVar(&c.progress, "progress", "auto", "progress output: auto, tty, plain, json or none")
	fs.BoolVarP(&c.quiet, "quiet", "q", false, "print nothing but errors (same as --progress none)")
	fs.BoolVar(&c.version, "version", false, "print the version and exit")
	fs.StringVar(&c.tmpDir, "tmpdir", "", "directory for downloaded blobs (default: the system temporary directory)")
	fs.StringArrayVar(&c.adds, "add", nil, "inject a host file or directory: SRC:DST[:MODE] (repeatable)")
	fs.StringVar(&c.configOut, "config-out", "", "write the image's launch config (entrypoint, cmd, env, ...) as JSON to FILE")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: img2ext4 [flags] SOURCE OUTPUT\n\n"+
			"SOURCE: registry reference, oci:DIR[:TAG], oci-archive:FILE[:TAG] or docker-archive:FILE[:REF]\n"+
			"OUTPUT: an ext4 image file (default), a directory (--format dir) or a tar file, - for stdout (--format tar)\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return nil, err
		}
		return nil, usageError{err}
	}
	if c.version {
		return c, nil
	}
	if fs.NArg() != 2 {
		fs.Usage()
		return nil, usageError{fmt.Errorf("want SOURCE and OUTPUT, got %d arguments", fs.NArg())}
	}
	c.source, c.out = fs.Arg(0), fs.Arg(1)
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
	if c.jobs < 1 {
		return nil, usageError{fmt.Errorf("--jobs must be at least 1, got %d", c.jobs)}
	}
	for _, a := range c.adds {
		if _, err := img2ext4.ParseAdd(a); err != nil {
			return nil, usageError{err}
		}
	}
	if err := c.ext4.Validate(); err != nil && c.format == "ext4" {
		return nil, usageError{err}
	}
	if c.out == "-" && c.format != "tar" {
		return nil, usageError{errors.New("OUTPUT - (stdout) needs --format tar")}
	}
	return c, nil
}

func versionString() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "devel"
}

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	c, err := parse(args, stderr)
	if errors.Is(err, pflag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "img2ext4: %v\n", err)
		return 2
	}
	if c.version {
		fmt.Fprintf(stdout, "img2ext4 %s\n", versionString())
		return 0
	}
	fetch := []ocifetch.Option{ocifetch.WithJobs(c.jobs), ocifetch.WithInsecure(c.insecure)}
	if c.platform.p != nil {
		fetch = append(fetch, ocifetch.WithPlatform(*c.platform.p))
	}
	if c.registryCA != "" {
		fetch = append(fetch, ocifetch.WithRegistryCA(c.registryCA))
	}
	if c.passwordStdin {
		b, err := io.ReadAll(io.LimitReader(stdin, 64<<10))
		if err != nil {
			fmt.Fprintf(stderr, "img2ext4: read password from stdin: %v\n", err)
			return 1
		}
		fetch = append(fetch, ocifetch.WithBasicAuth(c.username, strings.TrimRight(string(b), "\r\n")))
	}
	mode, _ := progress.ParseMode(c.progress)
	if c.quiet {
		mode = progress.ModeNone
	}
	var r *progress.Renderer
	if mode != progress.ModeNone {
		r = progress.NewRenderer(stderr, mode)
	}
	opts := []img2ext4.Option{img2ext4.WithFormat(img2ext4.Format(c.format)), img2ext4.WithFetchOptions(fetch...), img2ext4.WithTempDir(c.tmpDir)}
	if c.format == "ext4" {
		opts = append(opts, img2ext4.WithExt4(c.ext4))
	}
	if r != nil {
		opts = append(opts, img2ext4.WithProgress(r.Func()))
	}
	for _, s := range c.adds {
		a, _ := img2ext4.ParseAdd(s)
		opts = append(opts, img2ext4.WithAdd(a))
	}
	var res *img2ext4.Result
	if c.out == "-" {
		res, err = img2ext4.ConvertTar(ctx, c.source, stdout, opts...)
	} else {
		res, err = img2ext4.Convert(ctx, c.source, c.out, opts...)
	}
	if r != nil {
		r.Close()
	}
	if err == nil && c.configOut != "" {
		err = res.WriteLaunchConfig(c.configOut)
	}
	if err != nil {
		fmt.Fprintf(stderr, "img2ext4: %v\n", err)
		return 1
	}
	if !c.quiet {
		if !res.Skipped.Zero() {
			fmt.Fprintf(stderr, "img2ext4: %s\n", res.Skipped)
		}
		if c.out != "-" {
			fmt.Fprintf(stderr, "img2ext4: wrote %s (%s, %s, %d layers) to %s\n", c.format, res.Digest, res.Platform.String(), res.Layers, c.out)
		}
	}
	return 0
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
