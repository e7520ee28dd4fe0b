package ocifetch

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/img2ext4/img2ext4/layerstream"
	"github.com/img2ext4/img2ext4/progress"
)

// source reads the documents and blobs of one image source.
type source interface {
	// manifest returns the verified content of the manifest or index desc names.
	manifest(ctx context.Context, desc v1.Descriptor) ([]byte, error)
	// openBlob opens the blob desc names; the caller verifies and closes it.
	openBlob(ctx context.Context, desc v1.Descriptor) (io.ReadCloser, error)
}

// Image resolves ref to a single-platform image. ref is a registry
// reference or one of the local forms described in the package
// documentation. The manifest and config are fetched and verified before
// Image returns; layer blobs are read only when a layer's Compressed or
// Uncompressed method is called, and each is verified against its digest and
// size as it is read. ctx bounds those later reads too. An index is resolved
// to the entry matching [WithPlatform]; see [PlatformError].
func Image(ctx context.Context, ref string, opts ...Option) (v1.Image, error) {
	o, err := makeOptions(opts)
	if err != nil {
		return nil, err
	}
	r, err := parseReference(ref)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	rctx := ctx
	if o.progress != nil {
		var mu sync.Mutex // the ping tries two schemes at once
		retries := 0
		rctx = withRetryNotify(ctx, func(a Attempt) {
			mu.Lock()
			defer mu.Unlock()
			retries++
			o.progress(progress.Event{
				Phase:   progress.PhaseResolve,
				Layer:   -1,
				Total:   -1,
				Elapsed: time.Since(start),
				Retries: retries,
				Retry:   a.Err.Error(),
			})
		})
	}
	img, err := resolveImage(rctx, r, o)
	if err != nil {
		return nil, fmt.Errorf("resolve image %s: %w", r, err)
	}
	img.ctx = ctx // layers read later report no resolve progress
	if o.progress != nil {
		o.progress(progress.Event{
			Phase:    progress.PhaseResolve,
			Layer:    -1,
			Layers:   len(img.layers),
			Digest:   img.digest.String(),
			Total:    -1,
			Complete: true,
			Elapsed:  time.Since(start),
		})
	}
	return img, nil
}

func resolveImage(ctx context.Context, r reference, o *options) (*image, error) {
	switch r.transport {
	case transportRegistry:
		src, err := newRegistrySource(ctx, r, o)
		if err != nil {
			return nil, err
		}
		if o.blobCache != "" {
			if o.cache, err = OpenBlobCache(o.blobCache); err != nil {
				return nil, err
			}
		}
		raw, mt, err := src.root(ctx, r.ref)
		if err != nil {
			return nil, err
		}
		return resolve(ctx, src, raw, mt, false, o, 0)
	case transportOCI:
		src := &layoutSource{fs: dirFS(r.path), name: r.path}
		return src.resolve(ctx, r.tag, o)
	case transportOCIArchive:
		fsys, err := indexTar(r.path, o.tempDir)
		if err != nil {
			return nil, err
		}
		src := &layoutSource{fs: fsys, name: r.path}
		return src.resolve(ctx, r.tag, o)
	case transportDockerArchive:
		return resolveDockerArchive(ctx, r.path, r.tag, o)
	case transportDockerDaemon:
		return resolveEngineImage(ctx, r, o)
	case transportArchive:
		// An OCI layout archive has an index.json; docker save's has a manifest.json
		// (and, since Docker 25, an index.json as well, which serves as OCI).
		fsys, err := indexTar(r.path, o.tempDir)
		if err != nil {
			return nil, err
		}
		_, oci := fsys.files["index.json"]
		_, docker := fsys.files["manifest.json"]
		switch {
		case !oci && !docker:
			return nil, fmt.Errorf("ocifetch: archive %s holds neither an OCI layout (index.json) nor a docker save (manifest.json)", r.path)
		case !oci:
			return resolveDockerArchiveFS(ctx, fsys, r.path, r.tag, o)
		}
		src := &layoutSource{fs: fsys, name: r.path}
		return src.resolve(ctx, r.tag, o)
	}
	return nil, fmt.Errorf("%w: %s", ErrUnsupportedTransport, r.transport)
}

// resolve turns a manifest or index into an image, choosing the platform
// from indexes; depth counts nested indexes.
// With strict, declared comes from a descriptor rather than a Content-Type
// header, and must name the document's own media type exactly.
func resolve(ctx context.Context, src source, raw []byte, declared types.MediaType, strict bool, o *options, depth int) (*image, error) {
	what := "manifest"
	if depth > 0 {
		what = "index child"
	}
	kind, mt, err := classify(raw, declared, strict)
	if err != nil {
		var de *DescriptorError
		if errors.As(err, &de) && de.What == "" {
			de.What, de.Digest, de.Field = what, sha256Of(raw), "descriptor"
			if !strict {
				de.Field = "registry's Content-Type"
			}
		}
		return nil, err
	}
	if kind == kindManifest {
		return newImage(ctx, src, raw, mt, o, depth == 0)
	}
	if depth >= maxIndexDepth {
		return nil, fmt.Errorf("%w: indexes nested deeper than %d", ErrLimit, maxIndexDepth)
	}
	var idx v1.IndexManifest
	if err := json.Unmarshal(raw, &idx); err != nil {
		return nil, fmt.Errorf("parse index: %w", err)
	}
	desc, checkConfig, err := choosePlatform(idx.Manifests, o.platform)
	if err != nil {
		return nil, err
	}
	if err := checkDescriptor(desc, "index child"); err != nil {
		return nil, err
	}
	child, err := src.manifest(ctx, desc)
	if err != nil {
		return nil, fmt.Errorf("fetch manifest %s: %w", desc.Digest, err)
	}
	img, err := resolve(ctx, src, child, desc.MediaType, true, o, depth+1)
	if err != nil {
		return nil, err
	}
	if checkConfig {
		if err := checkPlatform(img.config, o); err != nil {
			return nil, err
		}
	}
	return img, nil
}

// choosePlatform picks the index entry that best matches want. An index
// holding a single entry without a platform gives that entry, to be checked
// against its config (checkConfig).
func choosePlatform(descs []v1.Descriptor, want v1.Platform) (desc v1.Descriptor, checkConfig bool, err error) {
	best, bestScore := -1, -1.0
	var offered []v1.Platform
	for i, d := range descs {
		if d.Platform == nil {
			continue
		}
		if isAttestation(d.Platform) {
			continue
		}
		offered = append(offered, *d.Platform)
		if s := platformScore(want, *d.Platform); s > bestScore {
			best, bestScore = i, s
		}
	}
	if best >= 0 && bestScore >= 0 {
		return descs[best], false, nil
	}
	if len(descs) == 1 && descs[0].Platform == nil {
		return descs[0], true, nil
	}
	return v1.Descriptor{}, false, &PlatformError{Want: want, Offered: offered, Index: true}
}

// checkPlatform refuses an image whose config names a platform other than
// the wanted one, unless allowed. A config without OS and architecture passes.
func checkPlatform(cfg *v1.ConfigFile, o *options) error {
	if o.allowMismatch || cfg.OS == "" || cfg.Architecture == "" {
		return nil
	}
	have := v1.Platform{OS: cfg.OS, Architecture: cfg.Architecture, Variant: cfg.Variant, OSVersion: cfg.OSVersion}
	if platformScore(o.platform, have) < 0 {
		return &PlatformError{Want: o.platform, Offered: []v1.Platform{have}}
	}
	return nil
}

// newImage parses a manifest, fetches and checks its config, and checks the
// platform of a top-level manifest.
func newImage(ctx context.Context, src source, raw []byte, mt types.MediaType, o *options, topLevel bool) (*image, error) {
	var m v1.Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("parse manifest: %w", err)
	}
	if err := checkDescriptor(m.Config, "config"); err != nil {
		return nil, err
	}
	if !isConfigType(m.Config.MediaType) {
		return nil, fmt.Errorf("%w: config media type %q: not a container image", ErrUnsupportedMediaType, m.Config.MediaType)
	}
	for _, l := range m.Layers {
		if !isLayerType(l.MediaType) {
			return nil, fmt.Errorf("%w: layer %s has media type %q", ErrUnsupportedMediaType, l.Digest, l.MediaType)
		}
		if err := checkDescriptor(l, "layer"); err != nil {
			return nil, err
		}
	}
	cache := o.cache
	if ip, ok := src.(inPlacer); ok && ip.inPlace() {
		cache = nil
	}
	rawConfig, err := readConfig(ctx, src, m.Config, cache)
	if err != nil {
		return nil, fmt.Errorf("fetch config %s: %w", m.Config.Digest, err)
	}
	cfg, err := v1.ParseConfigFile(bytes.NewReader(rawConfig))
	if err != nil {
		return nil, fmt.Errorf("parse config %s: %w", m.Config.Digest, err)
	}
	if len(cfg.RootFS.DiffIDs) != len(m.Layers) {
		return nil, fmt.Errorf("ocifetch: manifest lists %d layers but config %s lists %d diff_ids", len(m.Layers), m.Config.Digest, len(cfg.RootFS.DiffIDs))
	}
	if topLevel {
		if err := checkPlatform(cfg, o); err != nil {
			return nil, err
		}
	}
	img := &image{
		ctx:         ctx,
		src:         src,
		cache:       cache,
		rawManifest: raw,
		manifest:    &m,
		mediaType:   mt,
		digest:      sha256Of(raw),
		rawConfig:   rawConfig,
		config:      cfg,
	}
	for i, d := range m.Layers {
		img.layers = append(img.layers, &layer{img: img, desc: d, diffID: cfg.RootFS.DiffIDs[i]})
	}
	return img, nil
}

// readConfig reads and verifies the config blob desc names, through cache
// when it is not nil.
func readConfig(ctx context.Context, src source, desc v1.Descriptor, cache *BlobCache) ([]byte, error) {
	if cache == nil || desc.Size > maxConfigSize {
		rc, err := src.openBlob(ctx, desc)
		if err != nil {
			return nil, err
		}
		defer rc.Close()
		return readVerified(rc, desc, maxConfigSize)
	}
	f, err := cache.get(ctx, desc, func() (io.ReadCloser, error) { return src.openBlob(ctx, desc) })
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return readVerified(io.NewSectionReader(f, 0, desc.Size), desc, maxConfigSize)
}

// image is a resolved single-platform image whose blobs come from a source.
type image struct {
	ctx         context.Context
	src         source
	cache       *BlobCache // of blobs from src, or nil
	rawManifest []byte
	manifest    *v1.Manifest
	mediaType   types.MediaType
	digest      v1.Hash
	rawConfig   []byte
	config      *v1.ConfigFile
	layers      []*layer
}

var _ v1.Image = (*image)(nil)

func (i *image) Layers() ([]v1.Layer, error) {
	ls := make([]v1.Layer, len(i.layers))
	for n, l := range i.layers {
		ls[n] = l
	}
	return ls, nil
}

func (i *image) MediaType() (types.MediaType, error) { return i.mediaType, nil }
func (i *image) Size() (int64, error)                { return int64(len(i.rawManifest)), nil }
func (i *image) ConfigName() (v1.Hash, error)        { return i.manifest.Config.Digest, nil }
func (i *image) ConfigFile() (*v1.ConfigFile, error) { return i.config.DeepCopy(), nil }
func (i *image) RawConfigFile() ([]byte, error)      { return bytes.Clone(i.rawConfig), nil }
func (i *image) Digest() (v1.Hash, error)            { return i.digest, nil }
func (i *image) Manifest() (*v1.Manifest, error)     { return i.manifest.DeepCopy(), nil }
func (i *image) RawManifest() ([]byte, error)        { return bytes.Clone(i.rawManifest), nil }

func (i *image) LayerByDigest(h v1.Hash) (v1.Layer, error) {
	for _, l := range i.layers {
		if l.desc.Digest == h {
			return l, nil
		}
	}
	return nil, fmt.Errorf("%w: layer %s in image %s", ErrNotFound, h, i.digest)
}

func (i *image) LayerByDiffID(h v1.Hash) (v1.Layer, error) {
	for _, l := range i.layers {
		if l.diffID == h {
			return l, nil
		}
	}
	return nil, fmt.Errorf("%w: layer with diff_id %s in image %s", ErrNotFound, h, i.digest)
}

// layer is one layer of an image; its blob is verified as it is read.
type layer struct {
	img    *image
	desc   v1.Descriptor
	diffID v1.Hash
}

var _ v1.Layer = (*layer)(nil)

func (l *layer) Digest() (v1.Hash, error)            { return l.desc.Digest, nil }
func (l *layer) DiffID() (v1.Hash, error)            { return l.diffID, nil }
func (l *layer) Size() (int64, error)                { return l.desc.Size, nil }
func (l *layer) MediaType() (types.MediaType, error) { return l.desc.MediaType, nil }

// Compressed opens the verified blob stream. With a blob cache, the blob is
// first fetched into the cache (or found there, verified) and read from it.
func (l *layer) Compressed() (io.ReadCloser, error) {
	if c := l.img.cache; c != nil {
		f, err := c.get(l.img.ctx, l.desc, func() (io.ReadCloser, error) { return l.openRaw(l.img.ctx) })
		if err != nil {
			return nil, fmt.Errorf("fetch layer %s: %w", l.desc.Digest, err)
		}
		return fileReader(f, l.desc.Size), nil
	}
	rc, err := l.openRaw(l.img.ctx)
	if err != nil {
		return nil, fmt.Errorf("fetch layer %s: %w", l.desc.Digest, err)
	}
	return verify(rc, l.desc)
}

// Uncompressed decompresses the verified blob stream.
func (l *layer) Uncompressed() (io.ReadCloser, error) {
	rc, err := l.Compressed()
	if err != nil {
		return nil, err
	}
	return uncompressed(rc)
}

// uncompressed returns the decompressed stream of rc; closing it closes rc.
func uncompressed(rc io.ReadCloser) (io.ReadCloser, error) {
	zr, err := layerstream.Decompress(rc)
	if err != nil {
		rc.Close()
		return nil, err
	}
	return &readCloser{Reader: zr, close: func() error {
		zr.Close()
		return rc.Close()
	}}, nil
}

type readCloser struct {
	io.Reader
	close func() error
}

func (r *readCloser) Close() error { return r.close() }

// openRaw opens the unverified blob under ctx; [Prefetch] uses it to tie the
// download to its own context and verifies the bytes itself.
func (l *layer) openRaw(ctx context.Context) (io.ReadCloser, error) {
	return l.img.src.openBlob(ctx, l.desc)
}

// rawOpener is implemented by layers of this package that can open their
// unverified blob under a given context.
type rawOpener interface {
	openRaw(ctx context.Context) (io.ReadCloser, error)
}

var _ rawOpener = (*layer)(nil)

// inPlace reports a blob of a local source, read where it lies.
func (l *layer) inPlace() bool {
	ip, ok := l.img.src.(inPlacer)
	return ok && ip.inPlace()
}

var _ inPlacer = (*layer)(nil)

// checkDescriptor refuses a descriptor of what that cannot describe a
// document: one without a digest or with a negative size.
func checkDescriptor(d v1.Descriptor, what string) error {
	switch {
	case d.Digest.Algorithm == "" || d.Digest.Hex == "":
		return &DescriptorError{What: what, Problem: "has no digest"}
	case d.Size < 0:
		return &DescriptorError{What: what, Digest: d.Digest, Problem: fmt.Sprintf("has a negative size (%d)", d.Size)}
	}
	return nil
}
