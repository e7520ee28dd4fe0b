package layerapply

import (
	"errors"
	"fmt"
	"log/slog"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/img2ext4/img2ext4/progress"
)

// Limits caps what one image may make Apply do. A zero field means the default.
type Limits struct {
	// Entries is the most tar members over all layers. The default is 10,000,000.
	Entries int64
	// Bytes is the most uncompressed bytes over all layers. The default is 1 TiB.
	Bytes int64
	// PathLen is the longest entry name or link target in bytes. The default is 64 KiB.
	// Names and targets within it but longer than the kernel's PATH_MAX are skipped and
	// reported (see [Warning]), not refused.
	PathLen int
	// XattrBytes is the most bytes of extended-attribute records (names and values) on one
	// entry. The default is 1 MiB, archive/tar's own cap on a PAX header. Attributes within
	// it that ext4 cannot hold are dropped and reported (see [Warning]), not refused.
	XattrBytes int
	// Depth is the most components in an entry's name (or a hard link's target). The
	// default is 32768, every name within the default PathLen; names deeper than the
	// kernel can resolve are skipped and reported like long ones.
	Depth int
	// Xattrs is the most extended-attribute and ACL records on one entry. The default is
	// 1024.
	Xattrs int
	// Layers is the most layers in the image. The default is 1024.
	Layers int
}

// DefaultLimits returns the limits [Apply] uses unless [WithLimits] says otherwise.
func DefaultLimits() Limits {
	return Limits{Entries: 10_000_000, Bytes: 1 << 40, PathLen: 64 << 10, XattrBytes: 1 << 20,
		Depth: 32 << 10, Xattrs: 1024, Layers: 1024}
}

type options struct {
	limits   Limits
	progress progress.Func
	layers   []v1.Layer
	logger   *slog.Logger
	jobs     int   // 0: layerstream's default
	memory   int64 // -1: layerstream's default
	disk     int64 // -1: layerstream's default
	tmpDir   string
	strict   bool
	warn     func(Warning)
}

// Option configures [Apply].
type Option func(*options) error

func makeOptions(opts []Option) (*options, error) {
	o := &options{
		limits: DefaultLimits(),
		logger: slog.New(slog.DiscardHandler),
		memory: -1,
		disk:   -1,
	}
	for _, opt := range opts {
		if err := opt(o); err != nil {
			return nil, err
		}
	}
	return o, nil
}

// WithLimits sets the caps on the input. Zero fields keep their defaults; negative ones
// are refused. The defaults are listed on [Limits].
func WithLimits(l Limits) Option {
	return func(o *options) error {
		if l.Entries < 0 || l.Bytes < 0 || l.PathLen < 0 || l.XattrBytes < 0 || l.Depth < 0 || l.Xattrs < 0 || l.Layers < 0 {
			return errors.New("layerapply: negative limit")
		}
		if l.Entries > 0 {
			o.limits.Entries = l.Entries
		}
		if l.Bytes > 0 {
			o.limits.Bytes = l.Bytes
		}
		if l.PathLen > 0 {
			o.limits.PathLen = l.PathLen
		}
		if l.XattrBytes > 0 {
			o.limits.XattrBytes = l.XattrBytes
		}
		if l.Depth > 0 {
			o.limits.Depth = l.Depth
		}
		if l.Xattrs > 0 {
			o.limits.Xattrs = l.Xattrs
		}
		if l.Layers > 0 {
			o.limits.Layers = l.Layers
		}
		return nil
	}
}

// WithProgress reports apply progress to fn: [progress.PhaseApply] events counting each
// layer's uncompressed tar bytes (Total as layerstream.WithProgress describes it). fn is
// called from the goroutine that applies the layers, one call at a time; layers
// decompressed ahead report nothing until they are applied. The default is no reporting.
func WithProgress(fn progress.Func) Option {
	return func(o *options) error { o.progress = fn; return nil }
}

// WithLayers reads the layer blobs from layers instead of the image, for instance the
// prefetched layers of an ocifetch.Prefetcher. They must be the image's layers, in order.
// The default is img.Layers().
func WithLayers(layers []v1.Layer) Option {
	return func(o *options) error { o.layers = layers; return nil }
}

// WithLogger sends debug messages (skipped AUFS entries, ignored records) to l. The default
// discards them.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) error {
		if l == nil {
			return errors.New("layerapply: nil logger")
		}
		o.logger = l
		return nil
	}
}

// WithJobs lets up to n layers be decompressed at the same time, ahead of the one being
// applied, each verified against its DiffID on a goroutine of its own (see
// [layerstream.Pipeline]); their bytes wait in memory, then in unlinked temporary files in
// [WithTempDir], within the budgets of [WithDecompressBuffer]. Layers are applied strictly
// in order either way; 1 decompresses only the layer being applied, on a core of its own.
// The default is the number of CPUs the process may use ([layerstream.DefaultJobs]).
func WithJobs(n int) Option {
	return func(o *options) error {
		if n < 1 || n > 64 {
			return fmt.Errorf("layerapply: jobs %d out of range [1, 64]", n)
		}
		o.jobs = n
		return nil
	}
}

// WithDecompressBuffer caps the uncompressed bytes of layers decompressed ahead of the
// one being applied: memory bytes in memory, then disk bytes in temporary files. A
// negative value keeps the default: [layerstream.DefaultMemory] in memory, and on disk
// half the space available in the temporary directory with more than one job, none with
// one.
func WithDecompressBuffer(memory, disk int64) Option {
	return func(o *options) error {
		o.memory, o.disk = max(memory, -1), max(disk, -1)
		return nil
	}
}

// WithTempDir puts the files of [WithJobs] in dir. The default is the system's
// temporary directory.
func WithTempDir(dir string) Option {
	return func(o *options) error { o.tmpDir = dir; return nil }
}
