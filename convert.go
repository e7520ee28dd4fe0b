package img2ext4

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/img2ext4/img2ext4/cacert"
	"github.com/img2ext4/img2ext4/exporter"
	"github.com/img2ext4/img2ext4/ext4writer"
	"github.com/img2ext4/img2ext4/layerapply"
	"github.com/img2ext4/img2ext4/ocifetch"
	"github.com/img2ext4/img2ext4/progress"
	"github.com/img2ext4/img2ext4/store"
)

// Format is the kind of output [Convert] writes.
type Format string

const (
	// FormatExt4 writes an ext4 filesystem image, the default.
	FormatExt4 Format = "ext4"
	// FormatDir writes a root filesystem directory.
	FormatDir Format = "dir"
	// FormatTar writes one flattened, deterministic tar.
	FormatTar Format = "tar"
)

// ParseFormat returns the Format named s.
func ParseFormat(s string) (Format, error) {
	switch Format(s) {
	case FormatExt4, FormatDir, FormatTar:
		return Format(s), nil
	}
	return "", fmt.Errorf("unknown format %q (want ext4, dir or tar)", s)
}

// Result describes a finished conversion.
type Result struct {
	// Digest is the digest of the image manifest that was converted.
	Digest v1.Hash
	// Platform is the platform in the image config.
	Platform v1.Platform
	// Layers is the number of layers applied.
	Layers int
	// Skipped counts what a directory output could not restore without root privileges.
	Skipped layerapply.Skipped
	// Warnings lists, in the order met, the first [MaxWarnings] attributes dropped or
	// changed and entries skipped because the output cannot hold them as given (see
	// [WithStrict] and [layerapply.Warning]); WarningsOmitted counts the others.
	Warnings        []layerapply.Warning
	WarningsOmitted int
	// Filesystem describes the ext4 image written with [FormatExt4] (size, used and
	// available space, inodes); nil for the other formats.
	Filesystem *ext4writer.Stats
	// CACerts reports what [WithCACerts] changed in the image's trust stores; nil without
	// WithCACerts.
	CACerts *cacert.Report
	// Verity describes the dm-verity hash tree made with [WithVerity]: root hash, salt,
	// data blocks, hash offset and the veritysetup open line; nil without WithVerity.
	Verity *Verity
	// Cache reports what [WithCacheFrom] and [WithCacheTo] did: the key, the artifact
	// pulled instead of converting, the one pushed; nil without them. After a cache hit,
	// Layers, Warnings and CACerts are what the conversion that made the image reported,
	// as its artifact records them ([artifact.AnnotationReport]); an artifact pushed
	// without that record gives 0 and none.
	Cache *Cache
	// Config is the image's run configuration (entrypoint, command, environment, user,
	// working directory, labels, ports, stop signal), as a VM launcher needs it.
	Config v1.Config
}

type options struct {
	format   Format
	fetch    []ocifetch.Option
	exporter exporter.Mode
	progress progress.Func
	logger   *slog.Logger
	tmpDir   string
	jobs     int // layers decompressed at once; 0: layerapply's default
	limits   *layerapply.Limits
	adds     []Add
	mutate   []func(context.Context, layerapply.RootFS) error
	strict   bool
	caCerts  []*x509.Certificate
	caStrict bool
	caReport *cacert.Report // set by the WithCACerts step
	ext4     Ext4Options
	check    func(v1.Image) error // run before any layer is fetched
	config   string               // WithLaunchConfig
	staged   *staged              // the launch config, waiting for the output

	// WithVerity's request and what it made.
	verity       *VerityOptions
	verityRes    *Verity // set by the verity step, before the result is made
	verityStaged *staged // a separate hash file, waiting for the output

	store *store.Store // WithStore

	// WithCacheFrom and WithCacheTo: registry repositories of ext4 image artifacts.
	cacheFrom []string
	cacheTo   string
}

// Option configures [Convert].
type Option func(*options) error

func makeOptions(opts []Option) (*options, error) {
	o := &options{format: FormatExt4, exporter: exporter.Native, logger: slog.New(slog.DiscardHandler), ext4: Ext4Options{Align: DefaultAlign}}
	for _, opt := range opts {
		if err := opt(o); err != nil {
			return nil, err
		}
	}
	return o, nil
}

// WithFormat selects the output format. The default is [FormatExt4].
func WithFormat(f Format) Option {
	return func(o *options) error {
		if _, err := ParseFormat(string(f)); err != nil {
			return err
		}
		o.format = f
		return nil
	}
}

// WithFetchOptions passes options to [ocifetch.Image] and [ocifetch.Prefetch]: platform,
// credentials, TLS, parallel jobs. The default is none.
func WithFetchOptions(opts ...ocifetch.Option) Option {
	return func(o *options) error { o.fetch = append(o.fetch, opts...); return nil }
}

// WithExporter chooses how the source image is fetched: [exporter.Native] reads every
// source ocifetch knows without running a program; [exporter.Auto] also reads what it
// does not know (containers-storage: and other skopeo transports) by running skopeo, and
// a docker-daemon: image whose engine socket does not answer by running docker save;
// [exporter.Skopeo] and [exporter.Docker] always run their program. Whichever fetched
// the image, the layers are merged, the root filesystem changed and the output written
// here, once. The default is [exporter.Native].
func WithExporter(m exporter.Mode) Option {
	return func(o *options) error {
		if _, err := exporter.ParseMode(string(m)); err != nil {
			return err
		}
		o.exporter = m
		return nil
	}
}

// WithProgress reports every phase (resolve, download, apply, finalize, done) to fn.
//
// The work reports from several goroutines (the download workers and the one applying
// layers), but fn is never called concurrently: the conversion serializes every call to fn
// with one mutex, so fn needs no locking of its own for the state it keeps. fn runs while
// that mutex is held and while the reporting goroutine waits, so it must return quickly and
// never block: record the event and render it elsewhere, as [progress.Renderer] does. No
// call happens after [Convert] or [ConvertTar] has returned. The default is no reporting.
func WithProgress(fn progress.Func) Option {
	return func(o *options) error { o.progress = serialized(fn); return nil }
}

// serialized returns a Func that calls fn under a mutex, or nil for a nil fn.
func serialized(fn progress.Func) progress.Func {
	if fn == nil {
		return nil
	}
	var mu sync.Mutex
	return func(ev progress.Event) {
		mu.Lock()
		defer mu.Unlock()
		fn(ev)
	}
}

// WithLogger sends debug messages to l. The default discards them.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) error {
		if l == nil {
			return errors.New("nil logger")
		}
		o.logger = l
		return nil
	}
}

// WithTempDir puts downloaded blobs, decompressed layers waiting their turn and the tar
// spool in dir. The default is the system's
// temporary directory. (The output itself is always built beside its destination.)
func WithTempDir(dir string) Option {
	return func(o *options) error { o.tmpDir = dir; return nil }
}

// WithJobs decompresses up to n layers at the same time, ahead of the one being applied
// (see [layerapply.WithJobs]); layers are still applied in order. Downloads are bounded
// apart, by the ocifetch.WithJobs of [WithFetchOptions]. The default is the number of CPUs
// the process may use.
func WithJobs(n int) Option {
	return func(o *options) error {
		if n < 1 || n > 64 {
			return fmt.Errorf("jobs %d: want 1 to 64", n)
		}
		o.jobs = n
		return nil
	}
}

// WithLimits caps what the image may make the merge do; see [layerapply.Limits]. The
// default is layerapply's.
func WithLimits(l layerapply.Limits) Option {
	return func(o *options) error { o.limits = &l; return nil }
}

// WithAdd injects host files into the image after its layers, before the output is
// finished: an init, an agent, a configuration file. Later additions win over earlier ones.
// The default is none.
func WithAdd(adds ...Add) Option {
	return func(o *options) error {
		for _, a := range adds {
			if a.Src == "" || a.Dst == "" {
				return fmt.Errorf("add %q to %q: source and destination are required", a.Src, a.Dst)
			}
		}
		o.adds = append(o.adds, adds...)
		return nil
	}
}

// WithMutate runs fn on the merged root filesystem once, after the last layer and the
// files of [WithAdd], before the output is finished, for every output format alike: to
// inject an init, trust a CA, or change anything else through [layerapply.RootFS], whose
// names all resolve inside the image. Several WithMutate options run in the order given.
// A non-nil error from fn aborts the conversion and leaves no output. fn must not keep
// root after it returns. The default is none.
func WithMutate(fn func(ctx context.Context, root layerapply.RootFS) error) Option {
	return func(o *options) error {
		if fn == nil {
			return errors.New("nil mutation")
		}
		o.mutate = append(o.mutate, fn)
		return nil
	}
}

func (o *options) report(ev progress.Event) {
	if o.progress != nil {
		o.progress(ev)
	}
}

// Convert resolves ref and writes its merged root filesystem to out in the chosen format.
// out must not exist for [FormatDir] (or be an empty directory); an existing file is replaced
// for [FormatExt4] and [FormatTar]. The output is built under a temporary name beside out
// and renamed into place only when complete and synced: on any error, or when ctx is
// cancelled, nothing new is left at out and an existing file there is untouched. A symbolic
// link at out is followed.
//
// An existing block device at out takes [FormatExt4] in place: the filesystem fills the
// device (or the smaller [Ext4Options.Size]), blocks it does not use read back zeros, nothing
// past its end is touched, and the superblock is written last, so a conversion that stops
// half way leaves no mountable filesystem. A mounted device, one holding a mounted
// partition or used by another device, and one that is not writable are refused. A
// character device or FIFO at out takes only [FormatTar], streamed into it. What can be
// checked before the download is: such refusals are a *[CheckError].
//
// With [WithStore], the output is found in or converted into an artifact store and out
// receives a copy (see [ConvertStored]).
func Convert(ctx context.Context, ref, out string, opts ...Option) (res *Result, err error) {
	o, err := makeOptions(opts)
	if err != nil {
		return nil, err
	}
	if out == "" {
		return nil, errors.New("empty output path")
	}
	if err := o.precheck(); err != nil {
		return nil, err
	}
	if o.verity != nil && o.format != FormatExt4 {
		return nil, &CheckError{Op: "verity", Err: fmt.Errorf("WithVerity appends a hash tree to an ext4 image and needs FormatExt4, not %s", o.format)}
	}
	if err := o.checkCache(); err != nil {
		return nil, err
	}
	if len(o.cacheFrom) > 0 || o.cacheTo != "" {
		return convertCached(ctx, ref, out, o)
	}
	return convertTo(ctx, ref, out, o)
}

// convertTo converts ref into out as o says, through the store when o has one.
func convertTo(ctx context.Context, ref, out string, o *options) (*Result, error) {
	if o.store != nil {
		return convertViaStore(ctx, ref, out, o)
	}
	switch o.format {
	case FormatDir:
		return convertDir(ctx, ref, out, o)
	case FormatTar:
		return convertTarFile(ctx, ref, out, o)
	default:
		return convertExt4(ctx, ref, out, o)
	}
}

// ConvertTar resolves ref and writes its merged root filesystem as one flattened tar to w.
// It does not close w.
func ConvertTar(ctx context.Context, ref string, w io.Writer, opts ...Option) (*Result, error) {
	o, err := makeOptions(opts)
	if err != nil {
		return nil, err
	}
	if err := o.precheck(); err != nil {
		return nil, err
	}
	if o.verity != nil {
		return nil, &CheckError{Op: "verity", Err: errors.New("WithVerity appends a hash tree to an ext4 image and needs FormatExt4; ConvertTar writes a tar")}
	}
	var sink *layerapply.Tar
	res, err := run(ctx, ref, o, func(v1.Image) (layerapply.Sink, error) {
		s, err := layerapply.NewTar(w, o.tmpDir)
		sink = s
		return s, err
	}, func() error { return sink.Close() })
	if err == nil {
		err = o.commitLaunchConfig()
	}
	return res, err
}

func convertTarFile(ctx context.Context, ref, out string, o *options) (res *Result, err error) {
	t, err := openTarget(out, o)
	if err != nil {
		return nil, err
	}
	defer t.Close()
	err = t.write("write tar", func(f outputFile) error {
		var sink *layerapply.Tar
		res, err = run(ctx, ref, o, func(v1.Image) (layerapply.Sink, error) {
			s, err := layerapply.NewTar(f, o.tmpDir)
			sink = s
			return s, err
		}, func() error { return sink.Close() })
		return err
	})
	return res, err
}

// run does the shared part of every conversion: resolve, prefetch, apply, finish.
func run(ctx context.Context, ref string, o *options, newSink func(v1.Image) (layerapply.Sink, error), finish func() error) (*Result, error) {
	start := time.Now()
	o.report(progress.Event{Phase: progress.PhaseResolve, Layer: -1, Total: -1})
	fetchOpts := append([]ocifetch.Option{}, o.fetch...)
	if o.progress != nil {
		fetchOpts = append(fetchOpts, ocifetch.WithProgress(o.progress))
	}
	if o.tmpDir != "" {
		fetchOpts = append(fetchOpts, ocifetch.WithTempDir(o.tmpDir))
	}
	img, release, err := exporter.Image(ctx, ref, o.exporter, fetchOpts...)
	defer func() {
		if err := release(); err != nil {
			o.logger.Warn("remove exported image", "err", err)
		}
	}()
	if err != nil {
		return nil, err
	}
	digest, err := img.Digest()
	if err != nil {
		return nil, fmt.Errorf("image digest: %w", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("image config: %w", err)
	}
	if o.check != nil {
		if err := o.check(img); err != nil {
			return nil, err
		}
	}
	// ocifetch reports the end of the resolve phase.
	pf, err := ocifetch.Prefetch(ctx, img, fetchOpts...)
	if err != nil {
		return nil, err
	}
	defer pf.Close()
	sink, err := newSink(img)
	if err != nil {
		return nil, err
	}
	applyOpts := []layerapply.Option{layerapply.WithLayers(pf.Layers()), layerapply.WithLogger(o.logger), layerapply.WithTempDir(o.tmpDir)}
	if o.progress != nil {
		applyOpts = append(applyOpts, layerapply.WithProgress(o.progress))
	}
	if o.limits != nil {
		applyOpts = append(applyOpts, layerapply.WithLimits(*o.limits))
	}
	if o.jobs > 0 {
		applyOpts = append(applyOpts, layerapply.WithJobs(o.jobs))
	}
	warns := &warnings{o: o}
	applyOpts = append(applyOpts, warns.applyOptions()...)
	if err := merge(ctx, sink, img, o, applyOpts); err != nil {
		if a, ok := sink.(interface{ Abort() error }); ok {
			a.Abort() // release the sink; its output is discarded
		}
		return nil, err
	}
	fin := time.Now()
	o.report(progress.Event{Phase: progress.PhaseFinalize, Layer: -1, Layers: len(pf.Layers()), Total: -1})
	if err := finish(); err != nil {
		return nil, fmt.Errorf("finish output: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	o.report(progress.Event{Phase: progress.PhaseFinalize, Layer: -1, Layers: len(pf.Layers()), Total: -1, Complete: true, Elapsed: time.Since(fin)})
	res := &Result{Digest: digest, Platform: v1.Platform{OS: cf.OS, Architecture: cf.Architecture, Variant: cf.Variant},
		Layers: len(pf.Layers()), Config: cf.Config, Warnings: warns.list, WarningsOmitted: warns.omitted, CACerts: o.caReport, Verity: o.verityRes}
	if err := o.stageLaunchConfig(res); err != nil {
		return nil, err
	}
	o.report(progress.Event{Phase: progress.PhaseDone, Layer: -1, Layers: len(pf.Layers()), Total: -1, Complete: true, Elapsed: time.Since(start)})
	return res, nil
}

// merge applies the image's layers, then the files to add, to sink.
func merge(ctx context.Context, sink layerapply.Sink, img v1.Image, o *options, applyOpts []layerapply.Option) error {
	m, err := layerapply.NewMerger(sink, applyOpts...)
	if err != nil {
		return err
	}
	defer m.Close()
	if err := m.Apply(ctx, img); err != nil {
		return fmt.Errorf("apply image: %w", err)
	}
	if len(o.adds) == 0 && len(o.mutate) == 0 {
		return nil
	}
	root, err := m.RootFS()
	if err != nil {
		return err
	}
	for _, a := range o.adds {
		if err := addHostFiles(root, a); err != nil {
			return err
		}
	}
	for i, fn := range o.mutate {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := fn(ctx, root); err != nil {
			return fmt.Errorf("mutation %d: %w", i+1, err)
		}
	}
	return ctx.Err()
}

// convertExt4 writes the image's merged tree into an ext4 image at out through the ext4
// sink; the writer sizes the image (see [Ext4Options]).
func convertExt4(ctx context.Context, ref, out string, o *options) (res *Result, err error) {
	t, err := openTarget(out, o)
	if err != nil {
		return nil, err
	}
	defer t.Close()
	e := o.ext4
	if err := t.fixSize(&e); err != nil {
		return nil, err
	}
	if err := o.checkVerity(t); err != nil {
		return nil, err
	}
	o.check = func(img v1.Image) error { return t.checkSpace(img, e.Size) }
	var w *ext4writer.Writer
	var digest v1.Hash
	err = t.write("write image", func(f outputFile) error {
		res, err = run(ctx, ref, o, func(img v1.Image) (layerapply.Sink, error) {
			digest, err = img.Digest()
			if err != nil {
				return nil, err
			}
			wopts, err := e.writerOptions(digest.String())
			if err != nil {
				return nil, err
			}
			if w, err = ext4writer.New(f, wopts...); err != nil {
				return nil, err
			}
			return layerapply.NewExt4(w), nil
		}, func() error {
			if err := w.Close(); err != nil || o.verity == nil {
				return err
			}
			salt, err := o.veritySalt(digest, e)
			if err != nil {
				return err
			}
			o.verityRes, err = o.writeVerity(ctx, f, out, w.Stats().Size, salt)
			return err
		})
		return err
	})
	err = o.commitVerity(err)
	if err == nil {
		st := w.Stats()
		res.Filesystem = &st
	}
	return res, err
}
