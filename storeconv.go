package img2ext4

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/img2ext4/img2ext4/exporter"
	"github.com/img2ext4/img2ext4/ocifetch"
	"github.com/img2ext4/img2ext4/store"
)

// Names of the files of a conversion artifact in the store.
const (
	// ArtifactImage is the artifact's output: the ext4 image (with an appended hash
	// tree, if asked for) or the tar.
	ArtifactImage = "image"
	// ArtifactVerity is the separate dm-verity hash file, when [VerityOptions.Out] asked
	// for one.
	ArtifactVerity = "verity"
)

// WithStore sends [Convert] through the artifact store s (see [ConvertStored]): the
// output is found in s by its key or converted into s, and out receives a copy of it — a
// reflink where the filesystem can, else a copy of its data that keeps its holes — with
// the same atomicity as any output; the separate verity file and the launch config are
// written from the stored artifact too. Only [FormatExt4] and [FormatTar] into a regular
// file go through a store; [ConvertTar] does not use it. The default converts without a
// store.
func WithStore(s *store.Store) Option {
	return func(o *options) error {
		if s == nil {
			return errors.New("nil store")
		}
		o.store = s
		return nil
	}
}

// ConvertStored returns the artifact of converting ref with opts from the store s,
// converting it into s first when s holds none. The artifact is keyed by [StoreKey]; a
// hit costs no registry request for a reference written with a digest, one manifest
// request for a tag, and no conversion. Any number of processes asking for one key at
// once convert it once (see [store.Store.Build]); the conversion reads the image by the
// digest the key was computed from, so a tag that moves meanwhile cannot put other
// bytes under the key. The artifact's [ArtifactImage] file is the output, to be used in
// place or copied (see [store.CopyFile]), never changed.
//
// The [Result] is the one the conversion returned, kept with the artifact; on a hit its
// [Result.Verity] names the artifact's files. [WithLaunchConfig] is written from it.
// Only [FormatExt4] and [FormatTar] can be stored; [WithMutate] functions cannot be keyed
// ([ErrNotKeyable]).
func ConvertStored(ctx context.Context, s *store.Store, ref string, opts ...Option) (*Result, *store.Artifact, error) {
	o, err := makeOptions(opts)
	if err != nil {
		return nil, nil, err
	}
	res, a, err := convertStored(ctx, s, ref, o)
	if err != nil {
		return nil, nil, err
	}
	if o.config != "" {
		if err := res.WriteLaunchConfig(o.config); err != nil {
			return nil, nil, err
		}
	}
	return res, a, nil
}

// convertStored finds or converts ref in s with o; o's launch config is left to the caller.
func convertStored(ctx context.Context, s *store.Store, ref string, o *options) (*Result, *store.Artifact, error) {
	if o.format == FormatDir {
		return nil, nil, &CheckError{Op: "store", Err: errors.New("the store keeps ext4 images and tars, not directories")}
	}
	if err := o.precheck(); err != nil {
		return nil, nil, err
	}
	in, r, err := o.storeInputs(ctx, ref)
	if err != nil {
		return nil, nil, err
	}
	// Blobs go to the store's blob cache, unless the caller chose another.
	o.fetch = append([]ocifetch.Option{ocifetch.WithBlobCache(s.BlobDir())}, o.fetch...)
	key := in.Key()
	a, err := s.Build(ctx, key, in, store.Builder{
		Need: func(ctx context.Context) (store.Need, error) { return o.storeNeed(ctx, r.Pinned, s.BlobDir()) },
		Build: func(ctx context.Context, dir string) ([]byte, error) {
			res, err := o.convertInto(ctx, r, dir)
			if err != nil {
				return nil, err
			}
			return json.Marshal(res)
		},
	})
	if err != nil {
		return nil, nil, err
	}
	res := &Result{}
	if err := json.Unmarshal(a.Meta, res); err != nil {
		return nil, nil, fmt.Errorf("store: read the result kept with %s: %w", a.Dir, err)
	}
	res.Verity.relocate(a.Path(ArtifactImage), a.Path(ArtifactVerity))
	return res, a, nil
}

// storeNeed estimates what converting ref writes: the compressed layers in the blob cache
// blobDir, and an image at least as large as they are in the store.
func (o *options) storeNeed(ctx context.Context, ref, blobDir string) (store.Need, error) {
	img, err := ocifetch.Image(ctx, ref, o.fetch...)
	if err != nil {
		return store.Need{}, err
	}
	n := estimate(img)
	return store.Need{Image: n, Other: []store.Usage{{Dir: blobDir, Bytes: n, What: "compressed layers"}}}, nil
}

// convertInto converts the image r pinned into the artifact directory dir.
func (o *options) convertInto(ctx context.Context, r *ocifetch.Resolved, dir string) (*Result, error) {
	// The launch config is the caller's; a separate hash file goes into the artifact.
	config, verity := o.config, o.verity
	defer func() { o.config, o.verity = config, verity }()
	o.config = ""
	if verity != nil && verity.Out != "" {
		v := *verity
		v.Out = filepath.Join(dir, ArtifactVerity)
		o.verity = &v
	}
	out := filepath.Join(dir, ArtifactImage)
	var res *Result
	var err error
	if o.format == FormatTar {
		res, err = convertTarFile(ctx, r.Pinned, out, o)
	} else {
		res, err = convertExt4(ctx, r.Pinned, out, o)
	}
	if err != nil {
		return nil, err
	}
	native := o.exporter == exporter.Native || o.exporter == exporter.Auto
	if native && r.MediaType != "" && !strings.Contains(string(r.MediaType), "index") && !strings.Contains(string(r.MediaType), "list") && res.Digest != r.Digest {
		return nil, fmt.Errorf("store: converted manifest %s, but the key was computed for %s", res.Digest, r.Digest)
	}
	return res, nil
}

// relocate points the hash tree's description at the image and the separate hash file
// where they are now (v describes them where they were made), rewriting the veritysetup
// line as writeVerity writes it for a tree with a superblock.
func (v *Verity) relocate(image, hash string) {
	if v == nil {
		return
	}
	if v.HashOffset != 0 { // appended to the image
		hash = image
	}
	v.HashFile = hash
	args := []string{"veritysetup", "open", absPath(image), "img2ext4-" + v.RootHash[:min(12, len(v.RootHash))], absPath(hash), v.RootHash}
	if v.HashOffset != 0 {
		args = append(args, "--hash-offset="+strconv.FormatInt(v.HashOffset, 10))
	}
	for i, a := range args {
		args[i] = shellQuote(a)
	}
	v.Open = strings.Join(args, " ")
}

// convertViaStore is [Convert] with [WithStore]: the artifact, then copies of its files.
func convertViaStore(ctx context.Context, ref, out string, o *options) (*Result, error) {
	if fi, err := os.Stat(out); err == nil && !fi.Mode().IsRegular() {
		return nil, &CheckError{Op: "store", Path: out, Err: errors.New("a conversion through the store writes a regular file")}
	}
	if err := checkDirWritable(filepath.Dir(out)); err != nil {
		return nil, &CheckError{Op: "write output", Path: out, Err: err}
	}
	names := []string{ArtifactImage}
	dsts := []string{out}
	if o.verity != nil && o.verity.Out != "" {
		names, dsts = append(names, ArtifactVerity), append(dsts, o.verity.Out)
	}
	var res *Result
	var srcs []*os.File
	defer func() {
		for _, f := range srcs {
			f.Close()
		}
	}()
	// A prune in another process may remove the artifact between finding and opening
	// it; open files stay readable. Then it is found (or converted) once more.
	for try := 0; len(srcs) < len(names); try++ {
		var a *store.Artifact
		var err error
		if res, a, err = convertStored(ctx, o.store, ref, o); err != nil {
			return nil, err
		}
		for _, f := range srcs {
			f.Close()
		}
		srcs = srcs[:0]
		for _, name := range names {
			f, err := os.Open(a.Path(name))
			if errors.Is(err, fs.ErrNotExist) && try == 0 {
				break
			}
			if err != nil {
				return nil, fmt.Errorf("copy from the store: %w", err)
			}
			srcs = append(srcs, f)
		}
	}
	// Every file is staged before any is renamed into place, as without the store.
	var stage []*staged
	defer func() {
		for _, s := range stage {
			s.discard()
		}
	}()
	for i, src := range srcs {
		dst := dsts[i]
		if real, err := filepath.EvalSymlinks(dst); err == nil {
			dst = real // a symbolic link is followed, as without the store
		}
		s, err := stageFile(dst, "write output", func(f *os.File) error {
			_, err := store.CopyFile(f, src)
			return err
		})
		if err != nil {
			return nil, err
		}
		stage = append(stage, s)
	}
	for _, s := range stage {
		if err := s.commit(); err != nil {
			return nil, err
		}
	}
	stage = nil
	res.Verity.relocate(out, verityOut(o))
	if o.config != "" {
		if err := res.WriteLaunchConfig(o.config); err != nil {
			return nil, err
		}
	}
	return res, nil
}

// verityOut is the separate hash file asked for, or "".
func verityOut(o *options) string {
	if o.verity == nil {
		return ""
	}
	return o.verity.Out
}
