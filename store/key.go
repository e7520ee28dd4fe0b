package store

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// keySchema is hashed before the inputs, so that a change of the key's encoding never
// reuses an artifact made under another.
const keySchema = "img2ext4 store key v1\x00"

// Inputs are everything that decides the bytes of an artifact: two builds with equal
// Inputs make identical artifacts, and an input that could change a single byte of the
// output must be among them. The store does not interpret them; the converter fills them
// in (see img2ext4.StoreKey, which resolves a reference and lists the options of a
// conversion) and they are recorded with the artifact for inspection.
type Inputs struct {
	// Source is the digest the image reference resolved to ("sha256:…"): for a registry
	// reference, the manifest or index its tag pointed to; for a local image, its
	// manifest.
	Source string `json:"source"`
	// Platform is the platform chosen from an index, os/arch[/variant], with the default
	// filled in.
	Platform string `json:"platform"`
	// Format is the output format ("ext4", "tar", …).
	Format string `json:"format"`
	// Options holds every other output option, by name, in a canonical text form (JSON
	// for structured ones). Options left at their default may be left out only if
	// leaving them out is how their default is always written.
	Options map[string]string `json:"options,omitempty"`
	// Files holds the content digests of the host files the conversion reads (files and
	// directories to add, CA certificates), by role and position ("add.0", "ca-certs").
	Files map[string]string `json:"files,omitempty"`
	// Version names the converter that makes the bytes: its module version, VCS revision
	// and, for a build that cannot name its source, a digest of the program itself.
	Version string `json:"version"`
}

// Key addresses an artifact: "sha256:" followed by the hexadecimal SHA-256 of a schema
// line and the canonical JSON of its [Inputs] (encoding/json, which sorts map keys).
// Equal inputs give equal keys in every process and on every host, so a key also names
// an artifact kept elsewhere, such as one pushed to a registry and found again by key
// (the --cache-from/--cache-to of registry artifacts): compute it with [Inputs.Key], or
// with img2ext4.StoreKey for a conversion, and compare keys as strings.
type Key string

// Key returns the key of in.
func (in Inputs) Key() Key {
	b, err := json.Marshal(in)
	if err != nil { // maps of strings and strings always marshal
		panic(fmt.Sprintf("store: marshal inputs: %v", err))
	}
	h := sha256.New()
	h.Write([]byte(keySchema))
	h.Write(b)
	return Key("sha256:" + hex.EncodeToString(h.Sum(nil)))
}

// ErrBadKey reports a string that is not a [Key].
var ErrBadKey = errors.New("store: malformed key")

// ParseKey checks that s is a key: "sha256:" and 64 lowercase hexadecimal digits. A bare
// run of hex digits is accepted too, and prefixed.
func ParseKey(s string) (Key, error) {
	hexPart := strings.TrimPrefix(s, "sha256:")
	if len(hexPart) != 64 {
		return "", fmt.Errorf("%w: %q (want sha256: and 64 hex digits)", ErrBadKey, s)
	}
	for _, c := range hexPart {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return "", fmt.Errorf("%w: %q (want sha256: and 64 lowercase hex digits)", ErrBadKey, s)
		}
	}
	return Key("sha256:" + hexPart), nil
}

// Hex returns the key's hexadecimal digits, which name its files in the store.
func (k Key) Hex() string { return strings.TrimPrefix(string(k), "sha256:") }

// String returns the key as written: "sha256:…".
func (k Key) String() string { return string(k) }
