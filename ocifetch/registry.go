package ocifetch

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// manifestAccept lists the manifest media types asked from registries.
// Schema 1 is included so that it can be refused with a clear error rather
// than a 404 from registries that have nothing else.
var manifestAccept = strings.Join([]string{
	string(types.OCIImageIndex),
	string(types.OCIManifestSchema1),
	string(types.DockerManifestList),
	string(types.DockerManifestSchema2),
	string(types.DockerManifestSchema1Signed),
	string(types.DockerManifestSchema1),
}, ", ")

// registrySource reads manifests and blobs from a distribution registry.
type registrySource struct {
	repo    name.Repository
	client  *http.Client
	secrets []string // redacted from every error
}

// newRegistrySource authenticates to the registry of r for pulling and
// returns a source reading from it.
func newRegistrySource(ctx context.Context, r reference, o *options) (*registrySource, error) {
	ref := r.ref
	if o.insecure && r.scheme == schemeAuto {
		var err error
		if ref, err = name.ParseReference(ref.String(), name.Insecure); err != nil {
			return nil, fmt.Errorf("ocifetch: parse reference %q: %w", r.ref, err)
		}
	}
	repo := ref.Context()
	host := repo.RegistryStr()

	tlsConf := &tls.Config{MinVersion: tls.VersionTLS12}
	if len(o.caPEM) > 0 {
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		for _, b := range o.caPEM {
			pool.AppendCertsFromPEM(b)
		}
		tlsConf.RootCAs = pool
	}
	if o.insecure {
		tlsConf.InsecureSkipVerify = true
	}
	base := http.DefaultTransport.(*http.Transport).Clone()
	base.TLSClientConfig = tlsConf
	base.ResponseHeaderTimeout = responseHeaderTimeout

	policy := &schemePolicy{
		inner:      base,
		host:       host,
		allowHTTP:  r.scheme == schemeHTTP || o.insecure || isLoopback(host),
		allowHTTPS: r.scheme != schemeHTTP,
	}
	var rt http.RoundTripper = transport.NewRetry(policy)
	rt = transport.NewUserAgent(rt, o.userAgent)

	src := &registrySource{repo: repo}
	var auth authn.Authenticator
	if o.basicSet {
		auth = &authn.Basic{Username: o.user, Password: o.pass}
		src.secrets = append(src.secrets, o.pass)
	} else {
		kc := o.keychain
		if kc == nil {
			kc = DefaultKeychain()
		}
		var err error
		auth, err = authn.Resolve(ctx, kc, repo)
		if err != nil {
			return nil, fmt.Errorf("ocifetch: look up credentials for %s: %w", repo, err)
		}
	}
	if cfg, err := authn.Authorization(ctx, auth); err == nil && cfg != nil {
		src.secrets = append(src.secrets, cfg.Password, cfg.Auth, cfg.IdentityToken, cfg.RegistryToken)
	}

	tr, err := transport.NewWithContext(ctx, repo.Registry, auth, rt, []string{repo.Scope(transport.PullScope)})
	if err != nil {
		return nil, src.wrap(fmt.Errorf("connect to registry %s: %w", host, classifyHTTPError(err)))
	}
	src.client = &http.Client{Transport: tr}
	return src, nil
}

// wrap redacts the source's secrets from err.
func (s *registrySource) wrap(err error) error {
	return redact(err, s.secrets...)
}

func (s *registrySource) url(kind, ident string) string {
	// The scheme is rewritten by the authenticated transport to what the ping found.
	return fmt.Sprintf("https://%s/v2/%s/%s/%s", s.repo.RegistryStr(), s.repo.RepositoryStr(), kind, ident)
}

// get issues a GET and checks for a 200 answer; the caller closes the body.
func (s *registrySource) get(ctx context.Context, url, accept string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, s.wrap(err)
	}
	if err := transport.CheckError(resp, http.StatusOK); err != nil {
		resp.Body.Close()
		return nil, s.wrap(classifyHTTPError(err))
	}
	return resp, nil
}

// classifyHTTPError adds [ErrNotFound] or [ErrUnauthorized] to registry errors
// with those statuses.
func classifyHTTPError(err error) error {
	var terr *transport.Error
	if !errors.As(err, &terr) {
		return err
	}
	switch terr.StatusCode {
	case http.StatusNotFound:
		return fmt.Errorf("%w: %w", ErrNotFound, err)
	case http.StatusUnauthorized, http.StatusForbidden:
		return fmt.Errorf("%w: %w", ErrUnauthorized, err)
	}
	return err
}

// root fetches the manifest or index that ref names.
func (s *registrySource) root(ctx context.Context, ref name.Reference) ([]byte, types.MediaType, error) {
	resp, err := s.get(ctx, s.url("manifests", ref.Identifier()), manifestAccept)
	if err != nil {
		return nil, "", fmt.Errorf("fetch manifest %s: %w", ref, err)
	}
	defer resp.Body.Close()
	raw, err := readCapped(resp.Body, maxManifestSize, "manifest")
	if err != nil {
		return nil, "", fmt.Errorf("fetch manifest %s: %w", ref, s.wrap(err))
	}
	var want v1.Hash
	if d, ok := ref.(name.Digest); ok {
		if want, err = v1.NewHash(d.DigestStr()); err != nil {
			return nil, "", fmt.Errorf("fetch manifest %s: %w", ref, err)
		}
	} else if h := resp.Header.Get("Docker-Content-Digest"); h != "" {
		// Only trust the header as a check, and only for algorithms we know.
		if hh, err := v1.NewHash(h); err == nil && hh.Algorithm == "sha256" {
			want = hh
		}
	}
	if want.Hex != "" {
		if err := checkBytes(raw, want, -1); err != nil {
			return nil, "", fmt.Errorf("fetch manifest %s: %w", ref, err)
		}
	}
	return raw, types.MediaType(resp.Header.Get("Content-Type")), nil
}

func (s *registrySource) manifest(ctx context.Context, desc v1.Descriptor) ([]byte, error) {
	resp, err := s.get(ctx, s.url("manifests", desc.Digest.String()), manifestAccept)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	return readVerified(resp.Body, desc, maxManifestSize)
}

func (s *registrySource) openBlob(ctx context.Context, desc v1.Descriptor) (io.ReadCloser, error) {
	resp, err := s.get(ctx, s.url("blobs", desc.Digest.String()), "")
	if err != nil {
		return nil, err
	}
	if resp.ContentLength >= 0 && desc.Size >= 0 && resp.ContentLength != desc.Size {
		resp.Body.Close()
		return nil, &SizeError{Digest: desc.Digest, Size: desc.Size, Got: resp.ContentLength}
	}
	return resp.Body, nil
}

// responseHeaderTimeout bounds the wait for a registry's answer to a request.
const responseHeaderTimeout = 2 * time.Minute

// schemePolicy refuses plain HTTP to the registry host unless allowed, and
// TLS when the reference asked for plain HTTP.
type schemePolicy struct {
	inner                 http.RoundTripper
	host                  string
	allowHTTP, allowHTTPS bool
}

func (p *schemePolicy) RoundTrip(req *http.Request) (*http.Response, error) {
	if sameHost(req.URL.Host, p.host) {
		switch {
		case req.URL.Scheme == "http" && !p.allowHTTP:
			return nil, fmt.Errorf("ocifetch: refusing plain HTTP to %s (use WithInsecure or an http:// reference)", p.host)
		case req.URL.Scheme == "https" && !p.allowHTTPS:
			return nil, fmt.Errorf("ocifetch: %s was given as an http:// registry", p.host)
		}
	}
	return p.inner.RoundTrip(req)
}

// sameHost compares two host[:port] strings, ignoring default ports.
func sameHost(a, b string) bool {
	strip := func(h string) string {
		h = strings.ToLower(h)
		h = strings.TrimSuffix(h, ":443")
		return strings.TrimSuffix(h, ":80")
	}
	return strip(a) == strip(b)
}

// isLoopback reports whether host (with an optional port) is localhost or a
// loopback address.
func isLoopback(host string) bool {
	h := host
	if sh, _, err := net.SplitHostPort(host); err == nil {
		h = sh
	}
	h = strings.Trim(h, "[]")
	if strings.EqualFold(h, "localhost") {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}
