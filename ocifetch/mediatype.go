package ocifetch

import (
	"encoding/json"
	"fmt"
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
// refused with [ErrSchema1].
func classify(raw []byte, declared types.MediaType) (docKind, types.MediaType, error) {
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
