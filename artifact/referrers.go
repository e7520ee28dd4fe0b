package artifact

import (
	"context"
	"fmt"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/img2ext4/img2ext4/ocifetch"
)

// Find lists the ext4 image artifacts in the registry repository repo that refer to the
// manifest subject (the digest of a source image's manifest) and carry every annotation
// of match with the same value, as their descriptors in the referrers list say. It reads
// the registry's referrers API, or the OCI 1.1 fallback tag ("sha256-<hex>") where the
// registry has none; a subject nothing refers to gives an empty list. The descriptors
// come in the order the registry lists them; [Open] one with repo's name and its digest.
func Find(ctx context.Context, repo string, subject v1.Hash, match map[string]string, opts ...Option) ([]v1.Descriptor, error) {
	o, err := makeOptions(opts)
	if err != nil {
		return nil, err
	}
	nref, ropts, err := ocifetch.Remote(ctx, repo, o.fetch...)
	if err != nil {
		return nil, err
	}
	if _, ok := nref.(name.Digest); ok {
		return nil, fmt.Errorf("artifact: find in %s: name a repository, not a digest", repo)
	}
	d := nref.Context().Digest(subject.String())
	// No artifactType filter: some registries (go-containerregistry's among them) list
	// an artifact under its config's media type instead; both are accepted below.
	idx, err := remote.Referrers(d, ropts...)
	if err != nil {
		return nil, fmt.Errorf("artifact: list referrers of %s: %w", d, err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, fmt.Errorf("artifact: list referrers of %s: %w", d, err)
	}
	var found []v1.Descriptor
next:
	for _, desc := range im.Manifests {
		if desc.ArtifactType != ArtifactType && desc.ArtifactType != IndexMediaType {
			continue
		}
		for k, v := range match {
			if got, ok := desc.Annotations[k]; !ok || got != v {
				continue next
			}
		}
		found = append(found, desc)
	}
	return found, nil
}
