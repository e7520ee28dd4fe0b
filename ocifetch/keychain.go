package ocifetch

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
)

// DefaultKeychain returns the keychain used when neither [WithKeychain] nor
// [WithBasicAuth] is given: podman's auth.json (see [AuthFileKeychain])
// followed by the Docker config (~/.docker/config.json or
// $DOCKER_CONFIG/config.json, with credential helpers) as go-containerregistry's
// [authn.DefaultKeychain] reads it. Files are read at each lookup.
func DefaultKeychain() authn.Keychain {
	return authn.NewMultiKeychain(AuthFileKeychain(""), dockerKeychain{})
}

// dockerKeychain consults [authn.DefaultKeychain] only when a Docker config
// file exists: without one, that keychain falls back to podman's auth.json by
// registry name alone, which would bypass the per-namespace matching of
// [AuthFileKeychain].
type dockerKeychain struct{}

func (dockerKeychain) Resolve(target authn.Resource) (authn.Authenticator, error) {
	var candidates []string
	if d := os.Getenv("DOCKER_CONFIG"); d != "" {
		candidates = append(candidates, filepath.Join(d, "config.json"))
	}
	if home, err := os.UserHomeDir(); err == nil {
		candidates = append(candidates, filepath.Join(home, ".docker", "config.json"))
	}
	for _, f := range candidates {
		if fi, err := os.Stat(f); err == nil && fi.Mode().IsRegular() {
			return authn.DefaultKeychain.Resolve(target)
		}
	}
	return authn.Anonymous, nil
}

// AuthFileKeychain returns a keychain reading the containers-auth.json
// format used by podman, buildah and skopeo from file. When file is empty it
// uses REGISTRY_AUTH_FILE if set, else ${XDG_RUNTIME_DIR}/containers/auth.json
// if it exists, else ${XDG_CONFIG_HOME}/containers/auth.json (with
// XDG_CONFIG_HOME defaulting to ~/.config). A missing file yields anonymous
// access. Entries may name a registry ("quay.io"), a namespace or a
// repository ("quay.io/ns/repo"); the longest matching one wins.
func AuthFileKeychain(file string) authn.Keychain {
	return authFileKeychain{file: file}
}

type authFileKeychain struct {
	file string
}

// authFilePath finds the auth.json to read, or "".
func (k authFileKeychain) authFilePath() string {
	if k.file != "" {
		return k.file
	}
	if f := os.Getenv("REGISTRY_AUTH_FILE"); f != "" {
		return f
	}
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
		f := filepath.Join(d, "containers", "auth.json")
		if _, err := os.Stat(f); err == nil {
			return f
		}
	}
	d := os.Getenv("XDG_CONFIG_HOME")
	if d == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return ""
		}
		d = filepath.Join(home, ".config")
	}
	return filepath.Join(d, "containers", "auth.json")
}

// Resolve implements [authn.Keychain].
func (k authFileKeychain) Resolve(target authn.Resource) (authn.Authenticator, error) {
	file := k.authFilePath()
	if file == "" {
		return authn.Anonymous, nil
	}
	b, err := os.ReadFile(file)
	if errors.Is(err, fs.ErrNotExist) {
		return authn.Anonymous, nil
	}
	if err != nil {
		return nil, fmt.Errorf("ocifetch: read auth file: %w", err)
	}
	var af struct {
		Auths map[string]authn.AuthConfig `json:"auths"`
	}
	if err := json.Unmarshal(b, &af); err != nil {
		// The error of a bad "auth" field never holds its value, but the
		// JSON decoder's might quote it: keep only the file name.
		return nil, fmt.Errorf("ocifetch: parse auth file %s: invalid JSON or auth field", file)
	}
	best, bestLen := authn.AuthConfig{}, -1
	for key, cfg := range af.Auths {
		if cfg.Username == "" && cfg.Password == "" && cfg.IdentityToken == "" && cfg.RegistryToken == "" {
			continue
		}
		k := normalizeAuthKey(key)
		if n, ok := authKeyMatch(k, target); ok && n > bestLen {
			best, bestLen = cfg, n
		}
	}
	if bestLen < 0 {
		return authn.Anonymous, nil
	}
	best.Auth = ""
	return authn.FromConfig(best), nil
}

// normalizeAuthKey strips a scheme and a trailing "/v1/" or "/" from an
// auth.json key and maps Docker Hub's aliases to its registry name.
func normalizeAuthKey(k string) string {
	k = strings.TrimPrefix(strings.TrimPrefix(k, "https://"), "http://")
	k = strings.TrimSuffix(k, "/")
	k = strings.TrimSuffix(k, "/v1")
	k = strings.TrimSuffix(k, "/v2")
	host, rest, _ := strings.Cut(k, "/")
	switch host {
	case "docker.io", "index.docker.io", "registry-1.docker.io":
		host = name.DefaultRegistry
	}
	if rest == "" {
		return host
	}
	return host + "/" + rest
}

// authKeyMatch reports whether key names target's registry or one of its
// namespaces, and how specific the match is.
func authKeyMatch(key string, target authn.Resource) (int, bool) {
	reg := target.RegistryStr()
	if reg == "docker.io" || reg == "registry-1.docker.io" {
		reg = name.DefaultRegistry
	}
	full := reg
	if repo, ok := target.(name.Repository); ok {
		full = reg + "/" + repo.RepositoryStr()
	}
	if key == full || strings.HasPrefix(full, key+"/") {
		return len(key), true
	}
	return 0, false
}
