package ocifetch

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Resolved is what a reference names, as [Resolve] finds it: enough to key a conversion
// and to convert exactly that image later.
type Resolved struct {
	// Digest is the digest of the document the reference names: for a registry reference,
	// the manifest or index its tag points to (or the digest it is written with); for a
	// local image, the manifest of the platform chosen; for a "docker-daemon:" image,
	// the engine's image ID.
	Digest v1.Hash
	// MediaType is the media type of that document, when known (a registry reference
	// written with a digest is resolved without asking the registry, so it is empty).
	MediaType types.MediaType
	// Platform is the platform an index is resolved to: the one [WithPlatform] asked
	// for, or the default.
	Platform v1.Platform
	// AllowPlatformMismatch is the [WithAllowPlatformMismatch] setting.
	AllowPlatformMismatch bool
	// Pinned is a reference to the same image that [Image] accepts and that cannot move:
	// a registry reference by Digest (with the scheme prefix of the original), a
	// "docker-daemon:" image by its ID, or the local reference as given.
	Pinned string
}

// Resolve finds the digest ref names as cheaply as its transport allows: a registry
// reference written with a digest is answered without any request; a tag costs one
// manifest request (after the registry's ping and token exchange); a local image reads its
// index and manifest. Nothing else (config, layers, an index's children) is fetched, so
// Resolve does not check that the image has the wanted platform; [Image] does.
func Resolve(ctx context.Context, ref string, opts ...Option) (*Resolved, error) {
	o, err := makeOptions(opts)
	if err != nil {
		return nil, err
	}
	r, err := parseReference(ref)
	if err != nil {
		return nil, err
	}
	res := &Resolved{Platform: o.platform, AllowPlatformMismatch: o.allowMismatch, Pinned: ref}
	if r.transport == transportDockerDaemon {
		return resolveEngine(ctx, r, o, res)
	}
	if r.transport != transportRegistry {
		img, err := resolveImage(ctx, r, o)
		if err != nil {
			return nil, fmt.Errorf("resolve image %s: %w", r, err)
		}
		res.Digest, res.MediaType = img.digest, img.mediaType
		return res, nil
	}
	prefix := ""
	switch r.scheme {
	case schemeHTTP:
		prefix = "http://"
	case schemeHTTPS:
		prefix = "https://"
	}
	if d, ok := r.ref.(name.Digest); ok {
		h, err := v1.NewHash(d.DigestStr())
		if err != nil {
			return nil, fmt.Errorf("resolve image %s: %w", r, err)
		}
		res.Digest = h
		res.Pinned = prefix + r.ref.Context().Name() + "@" + h.String()
		return res, nil
	}
	src, err := newRegistrySource(ctx, r, o)
	if err != nil {
		return nil, fmt.Errorf("resolve image %s: %w", r, err)
	}
	raw, mt, err := src.root(ctx, r.ref)
	if err != nil {
		return nil, fmt.Errorf("resolve image %s: %w", r, err)
	}
	sum := sha256.Sum256(raw)
	res.Digest = v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}
	res.MediaType = mt
	res.Pinned = prefix + r.ref.Context().Name() + "@" + res.Digest.String()
	return res, nil
}
