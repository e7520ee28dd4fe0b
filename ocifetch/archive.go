package ocifetch

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/img2ext4/img2ext4/layerstream"
)

// dockerManifestEntry is one image in the manifest.json of "docker save".
type dockerManifestEntry struct {
	Config   string
	RepoTags []string
	Layers   []string
}

// archiveSource serves the blobs of a docker-archive by digest.
type archiveSource struct {
	fs    *tarFS
	blobs map[v1.Hash]string // digest to archive path
}

// inPlace reports that the archive's blobs are sections of a local file,
// read where they lie.
func (s *archiveSource) inPlace() bool { return true }

func (s *archiveSource) manifest(context.Context, v1.Descriptor) ([]byte, error) {
	return nil, fmt.Errorf("%w: docker archives hold no manifests by digest", ErrNotFound)
}

func (s *archiveSource) openBlob(ctx context.Context, desc v1.Descriptor) (io.ReadCloser, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	p, ok := s.blobs[desc.Digest]
	if !ok {
		return nil, fmt.Errorf("%w: blob %s in archive %s", ErrNotFound, desc.Digest, s.fs.path)
	}
	return s.fs.open(p)
}

// resolveDockerArchive reads the image ref (a RepoTag, "@N" for the N-th
// image, or "" for the only one) from the "docker save" archive at file. It
// synthesises an OCI manifest: uncompressed layers get their diff_id as
// digest, compressed ones the digest in their blobs/ path or, failing that,
// one computed by reading them once.
func resolveDockerArchive(ctx context.Context, file, ref string, o *options) (*image, error) {
	fsys, err := indexTar(file, o.tempDir)
	if err != nil {
		return nil, err
	}
	return resolveDockerArchiveFS(ctx, fsys, file, ref, o)
}

// resolveDockerArchiveFS is resolveDockerArchive on the indexed archive fsys.
func resolveDockerArchiveFS(ctx context.Context, fsys *tarFS, file, ref string, o *options) (*image, error) {
	rc, err := fsys.open("manifest.json")
	if err != nil {
		return nil, fmt.Errorf("%s is not a docker archive: %w", file, err)
	}
	rawManifest, err := readCapped(rc, maxManifestSize, "manifest.json")
	rc.Close()
	if err != nil {
		return nil, fmt.Errorf("read manifest.json: %w", err)
	}
	var entries []dockerManifestEntry
	if err := json.Unmarshal(rawManifest, &entries); err != nil {
		return nil, fmt.Errorf("parse manifest.json: %w", err)
	}
	entry, err := pickArchiveEntry(entries, ref, file)
	if err != nil {
		return nil, err
	}

	src := &archiveSource{fs: fsys, blobs: map[v1.Hash]string{}}
	configPath := cleanTarName(entry.Config)
	rc, err = fsys.open(configPath)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	rawConfig, err := readCapped(rc, maxConfigSize, "config "+configPath)
	rc.Close()
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	cfg, err := v1.ParseConfigFile(bytes.NewReader(rawConfig))
	if err != nil {
		return nil, fmt.Errorf("parse config %s: %w", configPath, err)
	}
	if len(cfg.RootFS.DiffIDs) != len(entry.Layers) {
		return nil, fmt.Errorf("ocifetch: manifest.json lists %d layers but config %s lists %d diff_ids", len(entry.Layers), configPath, len(cfg.RootFS.DiffIDs))
	}
	m := v1.Manifest{
		SchemaVersion: 2,
		MediaType:     types.OCIManifestSchema1,
		Config: v1.Descriptor{
			MediaType: types.OCIConfigJSON,
			Size:      int64(len(rawConfig)),
			Digest:    sha256Of(rawConfig),
		},
	}
	src.blobs[m.Config.Digest] = configPath
	for i, lp := range entry.Layers {
		lp = cleanTarName(lp)
		if !fsys.has(lp) {
			return nil, fmt.Errorf("%w: layer %s in archive %s", ErrNotFound, lp, file)
		}
		desc, err := archiveLayer(ctx, fsys, lp, cfg.RootFS.DiffIDs[i])
		if err != nil {
			return nil, fmt.Errorf("read layer %s: %w", lp, err)
		}
		src.blobs[desc.Digest] = lp
		m.Layers = append(m.Layers, desc)
	}
	raw, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	return newImage(ctx, src, raw, m.MediaType, o, true)
}

// pickArchiveEntry chooses the image of a docker archive that ref names.
func pickArchiveEntry(entries []dockerManifestEntry, ref, file string) (dockerManifestEntry, error) {
	var tags []string
	for _, e := range entries {
		tags = append(tags, e.RepoTags...)
	}
	list := strings.Join(tags, ", ")
	if list == "" {
		list = "no tags"
	}
	switch {
	case len(entries) == 0:
		return dockerManifestEntry{}, fmt.Errorf("%w: archive %s holds no images", ErrNotFound, file)
	case ref == "" && len(entries) == 1:
		return entries[0], nil
	case ref == "":
		return dockerManifestEntry{}, fmt.Errorf("ocifetch: archive %s holds %d images; name one with :REF or :@N (it has %s)", file, len(entries), list)
	case strings.HasPrefix(ref, "@"):
		n, err := strconv.Atoi(ref[1:])
		if err != nil || n < 0 || n >= len(entries) {
			return dockerManifestEntry{}, fmt.Errorf("%w: image %s in archive %s of %d images", ErrNotFound, ref, file, len(entries))
		}
		return entries[n], nil
	}
	for _, e := range entries {
		for _, t := range e.RepoTags {
			if t == ref || sameImageName(t, ref) {
				return e, nil
			}
		}
	}
	return dockerManifestEntry{}, fmt.Errorf("%w: %q in archive %s (it has %s)", ErrNotFound, ref, file, list)
}

// archiveLayer describes the layer blob at p.
func archiveLayer(ctx context.Context, fsys *tarFS, p string, diffID v1.Hash) (v1.Descriptor, error) {
	desc := v1.Descriptor{Size: fsys.size(p)}
	rc, err := fsys.open(p)
	if err != nil {
		return desc, err
	}
	defer rc.Close()
	head := make([]byte, 4)
	n, err := io.ReadFull(rc, head)
	if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
		return desc, err
	}
	switch layerstream.Sniff(head[:n]) {
	case layerstream.None:
		desc.MediaType, desc.Digest = types.OCIUncompressedLayer, diffID
		return desc, nil
	case layerstream.Gzip:
		desc.MediaType = types.OCILayer
	case layerstream.Zstd:
		desc.MediaType = types.OCILayerZStd
	}
	if alg, hex, ok := strings.Cut(strings.TrimPrefix(p, "blobs/"), "/"); ok && strings.HasPrefix(p, "blobs/") {
		if h, err := v1.NewHash(alg + ":" + hex); err == nil {
			desc.Digest = h
			return desc, nil
		}
	}
	if err := ctx.Err(); err != nil {
		return desc, err
	}
	h, _, err := v1.SHA256(io.MultiReader(bytes.NewReader(head[:n]), rc))
	if err != nil {
		return desc, err
	}
	desc.Digest = h
	return desc, nil
}
