package ocifetch

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/google/go-containerregistry/pkg/v1/types"
)

// docKind classifies a manifest-like document.
type docKind int

const (
	kindManifest docKind = iota
	kindIndex
)

// classify decides what raw is from its declared media type, falling back to
// its content when the declaration is missing or generic. Schema 1 is
// refused with [ErrSchema1]. A document whose own mediaType field, or whose
// shape (manifests without a config, or a config without manifests), says
// another kind of document than the declaration is refused with a
// [*DescriptorError]; with strict (the declaration is a descriptor, not a
// Content-Type header), so is any other known media type in its field.
func classify(raw []byte, declared types.MediaType, strict bool) (docKind, types.MediaType, error) {
	var probe struct {
		SchemaVersion int             `json:"schemaVersion"`
		MediaType     types.MediaType `json:"mediaType"`
		Manifests     json.RawMessage `json:"manifests"`
		Config        json.RawMessage `json:"config"`
		FSLayers      json.RawMessage `json:"fsLayers"`
	}
	if err := json.Unmarshal(raw, &probe); err != nil {
		return 0, "", fmt.Errorf("ocifetch: parse manifest: %w", err)
	}
	mt := types.MediaType(strings.TrimSpace(strings.Split(string(declared), ";")[0]))
	if probe.SchemaVersion == 1 || probe.FSLayers != nil {
		return 0, mt, ErrSchema1
	}
	if err := checkDeclared(mt, probe.MediaType, probe.Manifests != nil, probe.Config != nil, strict); err != nil {
		return 0, mt, err
	}
	if !isManifestType(mt) && !isIndexType(mt) {
		switch {
		case probe.MediaType != "":
			mt = probe.MediaType
		case probe.Manifests != nil:
			mt = types.OCIImageIndex
		case probe.Config != nil:
			mt = types.OCIManifestSchema1
		}
	}
	switch {
	case mt == types.DockerManifestSchema1 || mt == types.DockerManifestSchema1Signed:
		return 0, mt, ErrSchema1
	case isIndexType(mt):
		return kindIndex, mt, nil
	case isManifestType(mt):
		return kindManifest, mt, nil
	}
	return 0, mt, fmt.Errorf("%w: manifest media type %q", ErrUnsupportedMediaType, mt)
}

func isIndexType(mt types.MediaType) bool {
	return mt == types.OCIImageIndex || mt == types.DockerManifestList
}

func isManifestType(mt types.MediaType) bool {
	return mt == types.OCIManifestSchema1 || mt == types.DockerManifestSchema2
}

func isConfigType(mt types.MediaType) bool {
	return mt == types.OCIConfigJSON || mt == types.DockerConfigJSON
}

// isLayerType reports whether mt is a filesystem layer: tar, gzip or zstd,
// distributable or not, Docker or OCI.
func isLayerType(mt types.MediaType) bool {
	switch mt {
	case types.DockerLayer, types.DockerForeignLayer, types.DockerUncompressedLayer,
		types.OCILayer, types.OCILayerZStd, types.OCIUncompressedLayer,
		types.OCIRestrictedLayer, types.OCIUncompressedRestrictedLayer,
		"application/vnd.oci.image.layer.nondistributable.v1.tar+zstd":
		return true
	}
	return false
}

// checkDeclared compares a declared media type with what the document says
// of itself: its mediaType field (own) and whether it lists manifests or
// has a config. Only known manifest and index types are compared.
func checkDeclared(declared, own types.MediaType, manifests, config bool, strict bool) error {
	known := func(mt types.MediaType) bool { return isManifestType(mt) || isIndexType(mt) }
	if !known(declared) {
		return nil
	}
	if known(own) && own != declared && (strict || isIndexType(own) != isIndexType(declared)) {
		return &DescriptorError{Declared: string(declared), Found: strconv.Quote(string(own))}
	}
	switch {
	case isManifestType(declared) && manifests && !config:
		return &DescriptorError{Declared: string(declared), Found: "an image index (it lists manifests and has no config)"}
	case isIndexType(declared) && config && !manifests:
		return &DescriptorError{Declared: string(declared), Found: "an image manifest (it has a config and lists no manifests)"}
	}
	return nil
}
