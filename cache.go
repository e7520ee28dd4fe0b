package img2ext4

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/img2ext4/img2ext4/artifact"
	"github.com/img2ext4/img2ext4/cacert"
	"github.com/img2ext4/img2ext4/ext4writer"
	"github.com/img2ext4/img2ext4/layerapply"
	"github.com/img2ext4/img2ext4/ocifetch"
	"github.com/img2ext4/img2ext4/verity"
)

// Cache reports what [WithCacheFrom] and [WithCacheTo] did.
type Cache struct {
	// Key is the store key of the conversion, the artifacts' [artifact.AnnotationStoreKey].
	Key string `json:"key"`
	// Hit is the artifact pulled instead of converting ("host/repo@sha256:…"), or "" when
	// none of the cache-from repositories had one.
	Hit string `json:"hit,omitempty"`
	// Missed lists why a cache-from repository gave nothing: no artifact with the key, or
	// the error that made it unusable (the conversion then went on).
	Missed []string `json:"missed,omitempty"`
	// Pushed is the artifact WithCacheTo pushed ("host/repo@sha256:…"); Uploaded and
	// Blobs count the chunk blobs it uploaded and those it has.
	Pushed   string `json:"pushed,omitempty"`
	Uploaded int    `json:"uploaded,omitempty"`
	Blobs    int    `json:"blobs,omitempty"`
}

// WithCacheFrom makes [Convert] look, before converting, in each registry repository
// refs names (in order) for an ext4 image artifact that refers to the source image's
// manifest and carries the conversion's store key (see [StoreKey]); the first found is
// pulled into the output instead of converting (see [Pull]), and [Result.Cache] says so.
// A repository that has none, or whose artifact fails to pull or verify, is noted in
// [Cache.Missed] and the next one tried; when none gives one, the image is converted. It
// applies to [FormatExt4] only. The default is none.
func WithCacheFrom(refs ...string) Option {
	return func(o *options) error {
		for _, r := range refs {
			if err := ocifetch.CheckReference(r); err != nil {
				return fmt.Errorf("cache from %q: %w", r, err)
			}
		}
		o.cacheFrom = append(o.cacheFrom, refs...)
		return nil
	}
}

// WithCacheTo makes [Convert] push the image it made (or pulled from another cache) to
// the registry repository ref, with [artifact.Push]: under ref's tag, or by digest when it
// has none, with the source image's manifest as subject and the store key, source and
// platform as annotations, so that a later WithCacheFrom of the same repository finds it.
// A failed push fails Convert, the output being already in place. It applies to
// [FormatExt4] with the hash tree, if any, appended. The default is none.
func WithCacheTo(ref string) Option {
	return func(o *options) error {
		if err := ocifetch.CheckReference(ref); err != nil {
			return fmt.Errorf("cache to %q: %w", ref, err)
		}
		o.cacheTo = ref
		return nil
	}
}

// checkCache refuses what the registry cache cannot do, before anything is fetched.
func (o *options) checkCache() error {
	if len(o.cacheFrom) == 0 && o.cacheTo == "" {
		return nil
	}
	if o.format != FormatExt4 {
		return &CheckError{Op: "cache", Err: fmt.Errorf("registry caches hold ext4 images, not %s", o.format)}
	}
	if o.verity != nil && o.verity.Out != "" {
		return &CheckError{Op: "cache", Err: errors.New("registry caches hold the image with its hash tree appended, not in a file of its own")}
	}
	return nil
}

// convertCached is Convert with WithCacheFrom or WithCacheTo: the key, the source image,
// a pull from the first cache that has the artifact or else a conversion, then the push.
func convertCached(ctx context.Context, ref, out string, o *options) (*Result, error) {
	in, resolved, err := o.storeInputs(ctx, ref)
	if err != nil {
		return nil, err
	}
	key := in.Key()
	fetch := append([]ocifetch.Option{}, o.fetch...)
	img, err := ocifetch.Image(ctx, resolved.Pinned, fetch...)
	if err != nil {
		return nil, err
	}
	defer ocifetch.Release(img)
	digest, err := img.Digest()
	if err != nil {
		return nil, err
	}
	aopts := []artifact.Option{artifact.WithFetchOptions(fetch...)}
	c := &Cache{Key: key.String()}
	var res *Result
	for _, from := range o.cacheFrom {
		found, err := artifact.Find(ctx, from, digest, map[string]string{artifact.AnnotationStoreKey: c.Key}, aopts...)
		if err != nil {
			c.Missed = append(c.Missed, fmt.Sprintf("%s: %v", from, err))
			continue
		}
		if len(found) == 0 {
			c.Missed = append(c.Missed, from+": no artifact with the key")
			continue
		}
		hit := repository(from) + "@" + found[0].Digest.String()
		pr, err := Pull(ctx, hit, out, aopts...)
		if err != nil {
			var ce *CheckError
			if errors.As(err, &ce) {
				return nil, err
			}
			c.Missed = append(c.Missed, fmt.Sprintf("%s: %v", hit, err))
			continue
		}
		c.Hit = hit
		if res, err = cachedResult(img, out, pr); err != nil {
			return nil, err
		}
		if o.config != "" {
			if err := res.WriteLaunchConfig(o.config); err != nil {
				return nil, err
			}
		}
		break
	}
	if res == nil {
		if res, err = convertTo(ctx, resolved.Pinned, out, o); err != nil {
			return nil, err
		}
	}
	res.Cache = c
	if o.cacheTo == "" {
		return res, nil
	}
	sopts, err := artifact.Source(ref, img)
	if err != nil {
		return nil, err
	}
	ann := map[string]string{artifact.AnnotationStoreKey: c.Key, artifact.AnnotationReport: makeCacheReport(res)}
	if v := res.Verity; v != nil {
		ann[artifact.AnnotationVerityRootHash], ann[artifact.AnnotationVeritySalt] = v.RootHash, v.Salt
	}
	aopts = append(aopts, sopts...)
	aopts = append(aopts, artifact.WithAnnotations(ann))
	p, err := pushOutput(ctx, out, o.cacheTo, aopts)
	if err != nil {
		return res, fmt.Errorf("cache to %s (the image is in %s): %w", o.cacheTo, out, err)
	}
	c.Pushed, c.Uploaded, c.Blobs = p.Ref.String(), p.Uploaded, p.Blobs
	return res, nil
}

// repository strips a tag or digest from a registry reference.
func repository(ref string) string {
	if i := strings.LastIndex(ref, "@"); i >= 0 {
		ref = ref[:i]
	}
	if i := strings.LastIndexAny(ref, ":/"); i >= 0 && ref[i] == ':' {
		ref = ref[:i]
	}
	return ref
}

// pushOutput pushes the image at out, a file or a block device (of which the
// filesystem's size is pushed).
func pushOutput(ctx context.Context, out, ref string, opts []artifact.Option) (*artifact.Pushed, error) {
	f, err := os.Open(out)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if fi.Mode().IsRegular() {
		return artifact.Push(ctx, f, fi.Size(), ref, opts...)
	}
	st, err := readStats(f)
	if err != nil {
		return nil, err
	}
	return artifact.Push(ctx, f, st.Size, ref, opts...)
}

// maxCacheReport bounds the JSON of [artifact.AnnotationReport]: annotations go into the
// manifest (4 MiB with the chunks' descriptors) and into every referrers list.
const maxCacheReport = 64 << 10

// cacheReport is what a conversion reported besides the image, kept in the artifact's
// [artifact.AnnotationReport] so that a cache hit reports it as the conversion did.
type cacheReport struct {
	Layers          int                  `json:"layers"`
	Warnings        []layerapply.Warning `json:"warnings,omitempty"`
	WarningsOmitted int                  `json:"warnings_omitted,omitempty"`
	CACerts         *cacert.Report       `json:"ca_certs,omitempty"`
}

// makeCacheReport returns the JSON of res's cacheReport, within [maxCacheReport] bytes:
// warnings past what fits are only counted, as those past [MaxWarnings] are.
func makeCacheReport(res *Result) string {
	r := cacheReport{Layers: res.Layers, Warnings: res.Warnings, WarningsOmitted: res.WarningsOmitted, CACerts: res.CACerts}
	for {
		b, err := json.Marshal(r)
		if err != nil {
			return "" // cannot happen: plain fields
		}
		if len(b) <= maxCacheReport || len(r.Warnings) == 0 {
			return string(b)
		}
		keep := len(r.Warnings) / 2
		r.WarningsOmitted += len(r.Warnings) - keep
		r.Warnings = r.Warnings[:keep]
	}
}

// cachedResult describes an image pulled from a cache: the source image's digest,
// platform and config, the filesystem as its superblock says, the hash tree as the
// artifact's annotations and the verity superblock say, and the layers, warnings and CA
// report as the conversion that made it reported them ([artifact.AnnotationReport]; an
// artifact without it, or with one that does not parse, gives none).
func cachedResult(img v1.Image, out string, pr *PullResult) (*Result, error) {
	digest, err := img.Digest()
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	res := &Result{Digest: digest, Platform: v1.Platform{OS: cf.OS, Architecture: cf.Architecture, Variant: cf.Variant}, Config: cf.Config}
	f, err := os.Open(out)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := readStats(f)
	if err != nil {
		return nil, fmt.Errorf("read pulled image %s: %w", out, err)
	}
	res.Filesystem = st
	ann := pr.Artifact.Descriptor.Annotations
	var rep cacheReport
	if err := json.Unmarshal([]byte(ann[artifact.AnnotationReport]), &rep); err == nil {
		res.Layers, res.Warnings, res.WarningsOmitted, res.CACerts = rep.Layers, rep.Warnings, rep.WarningsOmitted, rep.CACerts
	}
	if root := ann[artifact.AnnotationVerityRootHash]; root != "" {
		sb := make([]byte, 32)
		if _, err := f.ReadAt(sb, st.Size); err != nil || string(sb[:6]) != "verity" {
			return nil, fmt.Errorf("read pulled image %s: no verity superblock at %d", out, st.Size)
		}
		u := hex.EncodeToString(sb[16:32])
		rootHash, err := hex.DecodeString(root)
		if err != nil {
			return nil, fmt.Errorf("artifact %s: verity root hash %q: %w", pr.Artifact.Ref, root, err)
		}
		t := &verity.Tree{RootHash: rootHash, Algorithm: verity.Algorithm, DataBlockSize: verity.BlockSize, HashBlockSize: verity.BlockSize,
			DataBlocks: uint64(st.Size / verity.BlockSize), HashOffset: st.Size, HashSize: pr.Artifact.Size() - st.Size, Superblock: true,
			UUID: u[0:8] + "-" + u[8:12] + "-" + u[12:16] + "-" + u[16:20] + "-" + u[20:32]}
		args := t.OpenArgs(absPath(out), "img2ext4-"+root[:min(12, len(root))], absPath(out))
		for i, a := range args {
			args[i] = shellQuote(a)
		}
		res.Verity = &Verity{RootHash: root, Salt: ann[artifact.AnnotationVeritySalt], HashAlgorithm: t.Algorithm, DataBlocks: t.DataBlocks,
			DataBlockSize: t.DataBlockSize, HashBlockSize: t.HashBlockSize, HashFile: out, HashOffset: t.HashOffset,
			HashSize: t.HashSize, UUID: t.UUID, Open: strings.Join(args, " ")}
	}
	return res, nil
}

// readStats reads the size, blocks and inodes of the ext4 filesystem at the start of r
// from its superblock.
func readStats(r io.ReaderAt) (*ext4writer.Stats, error) {
	sb := make([]byte, 1024)
	if _, err := r.ReadAt(sb, 1024); err != nil {
		return nil, err
	}
	le := binary.LittleEndian
	if le.Uint16(sb[0x38:]) != 0xef53 || le.Uint32(sb[0x18:]) > 6 {
		return nil, errors.New("no ext4 superblock")
	}
	lo := func(off int) uint64 { return uint64(le.Uint32(sb[off:])) }
	hi := func(off int) uint64 {
		if le.Uint32(sb[0x60:])&0x80 == 0 { // no INCOMPAT_64BIT
			return 0
		}
		return uint64(le.Uint32(sb[off:])) << 32
	}
	st := &ext4writer.Stats{BlockSize: 1024 << le.Uint32(sb[0x18:]), Blocks: lo(0x4) | hi(0x150), ReservedBlocks: lo(0x8) | hi(0x154),
		FreeBlocks: lo(0xc) | hi(0x158), Inodes: lo(0x0), FreeInodes: lo(0x10)}
	st.Size = int64(st.Blocks) * int64(st.BlockSize)
	st.KernelReserved = min(st.Blocks/50, 4096)
	return st, nil
}
