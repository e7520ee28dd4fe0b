package whiteout

import (
	"path"
	"strings"
)

// Prefix starts the base name of every whiteout entry.
const Prefix = ".wh."

// OpaqueName is the base name of the marker that makes its directory opaque.
const OpaqueName = ".wh..wh..opq"

// metaPrefix starts AUFS-internal names such as ".wh..wh.plnk" and ".wh..wh.aufs".
const metaPrefix = ".wh..wh."

// Kind tells what a tar entry name means for layer semantics.
type Kind int

const (
	// None is an ordinary entry that is not a whiteout.
	None Kind = iota
	// File is ".wh.NAME": the target, and everything below it, is removed from lower layers.
	File
	// Opaque is ".wh..wh..opq": the lower-layer children of the target directory are hidden.
	Opaque
	// Meta is an AUFS bookkeeping name (".wh..wh.plnk", ".wh..wh.aufs", ...); it is skipped.
	Meta
	// Invalid is a whiteout whose target is empty, "." or "..", or contains a slash.
	Invalid
)

// String returns the kind's name.
func (k Kind) String() string {
	switch k {
	case None:
		return "none"
	case File:
		return "whiteout"
	case Opaque:
		return "opaque"
	case Meta:
		return "aufs-meta"
	case Invalid:
		return "invalid"
	}
	return "unknown"
}

// Classify reports what name means. The name is a slash-separated path inside the image,
// already cleaned (see fs.ValidPath); only its last element is examined.
//
// For [File] the target is the path of the entry to remove; for [Opaque] it is the
// directory whose lower-layer children are hidden ("." for the root); for every other kind
// it is name unchanged. A name under an AUFS metadata directory (".wh..wh.plnk/x") is
// [Meta] too, so hard-link staging areas never reach the output.
func Classify(name string) (k Kind, target string) {
	dir, base := path.Split(name)
	dir = strings.TrimSuffix(dir, "/")
	if dir == "" {
		dir = "."
	}
	if strings.Contains(dir, metaPrefix) {
		for _, elem := range strings.Split(dir, "/") {
			if strings.HasPrefix(elem, metaPrefix) {
				return Meta, name
			}
		}
	}
	if base == OpaqueName {
		return Opaque, dir
	}
	if strings.HasPrefix(base, metaPrefix) {
		return Meta, name
	}
	if !strings.HasPrefix(base, Prefix) {
		return None, name
	}
	t := base[len(Prefix):]
	if t == "" || t == "." || t == ".." || strings.ContainsAny(t, "/\x00") {
		return Invalid, name
	}
	return File, path.Join(dir, t)
}
