package ocifetch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"sort"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Annotations naming an image in an OCI layout's index.json.
const (
	annotationRefName        = "org.opencontainers.image.ref.name"
	annotationContainerdName = "io.containerd.image.name"
)

// blobFS opens files of a layout or archive by slash-separated name.
type blobFS interface {
	open(name string) (io.ReadCloser, error)
}

// dirFS is a layout directory on disk.
type dirFS string

func (d dirFS) open(name string) (io.ReadCloser, error) {
	f, err := os.DirFS(string(d)).Open(name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s in %s", ErrNotFound, name, string(d))
	}
	return f, err
}

// blobPath returns the layout path of a digest.
func blobPath(h v1.Hash) (string, error) {
	if h.Algorithm == "" || h.Hex == "" || strings.ContainsAny(h.Algorithm+h.Hex, "/\\.") {
		return "", fmt.Errorf("ocifetch: invalid digest %q", h)
	}
	return "blobs/" + h.Algorithm + "/" + h.Hex, nil
}

// layoutSource reads an OCI image layout from a directory or a tar.
type layoutSource struct {
	fs   blobFS
	name string // for messages
}

// inPlace reports that the layout's blobs are local files (or sections of
// one), read where they lie.
func (s *layoutSource) inPlace() bool { return true }

func (s *layoutSource) manifest(ctx context.Context, desc v1.Descriptor) ([]byte, error) {
	rc, err := s.openBlob(ctx, desc)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return readVerified(rc, desc, maxManifestSize)
}

func (s *layoutSource) openBlob(ctx context.Context, desc v1.Descriptor) (io.ReadCloser, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	p, err := blobPath(desc.Digest)
	if err != nil {
		return nil, err
	}
	return s.fs.open(p)
}

// readSmall reads a small file of the layout.
func (s *layoutSource) readSmall(name string) ([]byte, error) {
	rc, err := s.fs.open(name)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return readCapped(rc, maxManifestSize, name)
}

// resolve finds the image named tag (or the only image) in the layout.
func (s *layoutSource) resolve(ctx context.Context, tag string, o *options) (*image, error) {
	layoutFile, err := s.readSmall("oci-layout")
	if err != nil {
		return nil, fmt.Errorf("%s is not an OCI image layout: %w", s.name, err)
	}
	var lf struct {
		Version string `json:"imageLayoutVersion"`
	}
	if err := json.Unmarshal(layoutFile, &lf); err != nil || lf.Version == "" {
		return nil, fmt.Errorf("ocifetch: %s is not an OCI image layout: bad oci-layout file", s.name)
	}
	rawIndex, err := s.readSmall("index.json")
	if err != nil {
		return nil, fmt.Errorf("read index.json: %w", err)
	}
	var idx v1.IndexManifest
	if err := json.Unmarshal(rawIndex, &idx); err != nil {
		return nil, fmt.Errorf("parse index.json: %w", err)
	}
	var named bool
	for _, d := range idx.Manifests {
		if len(descNames(d)) > 0 {
			named = true
		}
	}

	var descs []v1.Descriptor
	switch {
	case tag != "":
		for _, d := range idx.Manifests {
			if matchesName(d, tag) {
				descs = append(descs, d)
			}
		}
		if len(descs) == 0 {
			return nil, fmt.Errorf("%w: tag %q in %s (it has %s)", ErrNotFound, tag, s.name, listNames(idx.Manifests))
		}
	case len(idx.Manifests) == 0:
		return nil, fmt.Errorf("%w: %s holds no images", ErrNotFound, s.name)
	case len(idx.Manifests) == 1 || !named:
		descs = idx.Manifests
	default:
		return nil, fmt.Errorf("ocifetch: %s holds several images; name one with :TAG (it has %s)", s.name, listNames(idx.Manifests))
	}

	if len(descs) == 1 {
		if err := checkDescriptor(descs[0], "index.json entry"); err != nil {
			return nil, err
		}
		raw, err := s.manifest(ctx, descs[0])
		if err != nil {
			return nil, fmt.Errorf("fetch manifest %s: %w", descs[0].Digest, err)
		}
		return resolve(ctx, s, raw, descs[0].MediaType, true, o, 0)
	}
	// Several entries: one per platform, as index.json of a multi-platform
	// image written by "oras" or go-containerregistry's layout.Write.
	raw, err := json.Marshal(v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex, Manifests: descs})
	if err != nil {
		return nil, err
	}
	return resolve(ctx, s, raw, types.OCIImageIndex, true, o, 0)
}

// descNames returns the names an index.json entry is known by.
func descNames(d v1.Descriptor) []string {
	var names []string
	for _, k := range []string{annotationRefName, annotationContainerdName} {
		if v := d.Annotations[k]; v != "" {
			names = append(names, v)
		}
	}
	return names
}

// matchesName reports whether d is named tag, literally or as the same
// normalised registry reference ("alpine:3.20" for
// "docker.io/library/alpine:3.20").
func matchesName(d v1.Descriptor, tag string) bool {
	for _, n := range descNames(d) {
		if n == tag || sameImageName(n, tag) {
			return true
		}
	}
	return false
}

// sameImageName compares two registry references after normalisation.
func sameImageName(a, b string) bool {
	ra, err := name.ParseReference(a)
	if err != nil {
		return false
	}
	rb, err := name.ParseReference(b)
	if err != nil {
		return false
	}
	return ra.Name() == rb.Name()
}

// listNames lists the names in an index.json for messages.
func listNames(descs []v1.Descriptor) string {
	seen := map[string]bool{}
	var names []string
	for _, d := range descs {
		for _, n := range descNames(d) {
			if !seen[n] {
				seen[n] = true
				names = append(names, fmt.Sprintf("%q", n))
			}
		}
	}
	if len(names) == 0 {
		return "no named images"
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}
