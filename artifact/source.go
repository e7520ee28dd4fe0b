package artifact

import (
	"context"
	"fmt"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/img2ext4/img2ext4/ocifetch"
)

// Source returns the options that make [Push] describe the image converted from the
// source image img, given as ref: [WithSubject] with img's manifest descriptor, and
// [WithAnnotations] with [AnnotationSourceRef] (ref), [AnnotationSourceDigest] and
// [AnnotationPlatform] (from img's config).
func Source(ref string, img v1.Image) ([]Option, error) {
	d, err := img.Digest()
	if err != nil {
		return nil, fmt.Errorf("artifact: source %s: %w", ref, err)
	}
	mt, err := img.MediaType()
	if err != nil {
		return nil, fmt.Errorf("artifact: source %s: %w", ref, err)
	}
	size, err := img.Size()
	if err != nil {
		return nil, fmt.Errorf("artifact: source %s: %w", ref, err)
	}
	a := map[string]string{AnnotationSourceRef: ref, AnnotationSourceDigest: d.String()}
	if cf, err := img.ConfigFile(); err == nil {
		p := v1.Platform{OS: cf.OS, Architecture: cf.Architecture, Variant: cf.Variant}
		if p.OS != "" && p.Architecture != "" {
			a[AnnotationPlatform] = p.String()
		}
	}
	return []Option{WithSubject(v1.Descriptor{MediaType: mt, Digest: d, Size: size}), WithAnnotations(a)}, nil
}

// ResolveSource resolves ref with [ocifetch.Image] (a registry image or a local layout
// or archive, the platform chosen by opts) and returns the options of [Source].
func ResolveSource(ctx context.Context, ref string, opts ...ocifetch.Option) ([]Option, error) {
	img, err := ocifetch.Image(ctx, ref, opts...)
	if err != nil {
		return nil, err
	}
	defer ocifetch.Release(img)
	return Source(ref, img)
}
