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
	pol     retryPolicy
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

	rt := registryTransport(r, host, o)
	pol := retryPolicy{retries: o.retries, maxTime: o.retryMaxTime}

	src := &registrySource{repo: repo, pol: pol}
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

// registryTransport returns the round tripper every request to the registry host goes
// through, below authentication: TLS with the extra CAs (unverified with WithInsecure),
// plain HTTP only where allowed (see [schemePolicy]), the retry policy and the user agent.
func registryTransport(r reference, host string, o *options) http.RoundTripper {
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
	var rt http.RoundTripper = &retryTransport{inner: policy, pol: retryPolicy{retries: o.retries, maxTime: o.retryMaxTime}}
	rt = transport.NewUserAgent(rt, o.userAgent)
	return rt
}

// wrap redacts the source's secrets from err.
func (s *registrySource) wrap(err error) error {
	return redact(err, s.secrets...)
}

func (s *registrySource) url(kind, ident string) string {
	// The scheme is rewritten by the authenticated transport to what the ping found.
	return fmt.Sprintf("https://%s/v2/%s/%s/%s", s.repo.RegistryStr(), s.repo.RepositoryStr(), kind, ident)
}

// errRangeRefused reports a registry answering a Range request with 416.
var errRangeRefused = errors.New("ocifetch: registry refused the Range request")

// newRetryState starts the retries of one request made under ctx.
func (s *registrySource) newRetryState(ctx context.Context) *retryState {
	return newRetryState(s.pol, retryNotifyFrom(ctx))
}

// get issues a GET under st, for bytes from to to (inclusive; to <= 0 for
// the end) when from > 0, and checks for a 200 or 206 answer; the caller
// closes the body. The transport has retried what was worth retrying, so
// its errors are final, except [errRangeRefused].
func (s *registrySource) get(ctx context.Context, st *retryState, url, accept string, from, to int64) (*http.Response, error) {
	req, err := http.NewRequestWithContext(withRetryState(ctx, st), http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	if from > 0 {
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-", from))
		if to > 0 {
			req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", from, to))
		}
	}
	resp, err := s.client.Do(req)
	if err != nil {
		if cerr := context.Cause(ctx); cerr != nil {
			return nil, cerr
		}
		return nil, s.wrap(err)
	}
	if from > 0 && resp.StatusCode == http.StatusRequestedRangeNotSatisfiable {
		resp.Body.Close()
		return nil, errRangeRefused
	}
	if err := transport.CheckError(resp, http.StatusOK, http.StatusPartialContent); err != nil {
		resp.Body.Close()
		return nil, s.wrap(st.final(classifyHTTPError(err)))
	}
	return resp, nil
}

// fetchDocument GETs a manifest or index and reads it whole, checking it
// with check; a body cut short is fetched again within the retry budget.
func (s *registrySource) fetchDocument(ctx context.Context, url string, check func(raw []byte, h http.Header) error) ([]byte, http.Header, error) {
	st := s.newRetryState(ctx)
	for {
		resp, err := s.get(ctx, st, url, manifestAccept, 0, 0)
		if err != nil {
			return nil, nil, err
		}
		raw, err := readCapped(resp.Body, maxManifestSize, "manifest")
		resp.Body.Close()
		if err == nil && resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("ocifetch: registry answered a plain GET with status %d", resp.StatusCode)
		}
		if err == nil {
			if err = check(raw, resp.Header); err == nil {
				return raw, resp.Header, nil
			}
		}
		if cerr := context.Cause(ctx); cerr != nil {
			return nil, nil, cerr
		}
		wait, err := st.fail(err, 0)
		if err != nil {
			return nil, nil, s.wrap(err)
		}
		if err := sleep(ctx, wait); err != nil {
			return nil, nil, err
		}
	}
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
	var want v1.Hash
	if d, ok := ref.(name.Digest); ok {
		var err error
		if want, err = v1.NewHash(d.DigestStr()); err != nil {
			return nil, "", fmt.Errorf("fetch manifest %s: %w", ref, err)
		}
	}
	raw, h, err := s.fetchDocument(ctx, s.url("manifests", ref.Identifier()), func(raw []byte, h http.Header) error {
		want := want
		if want.Hex == "" {
			// Only trust the header as a check, and only for algorithms we know.
			if hh, err := v1.NewHash(h.Get("Docker-Content-Digest")); err == nil && hh.Algorithm == "sha256" {
				want = hh
			}
		}
		if want.Hex != "" {
			return checkBytes(raw, want, -1)
		}
		return nil
	})
	if err != nil {
		return nil, "", fmt.Errorf("fetch manifest %s: %w", ref, err)
	}
	return raw, types.MediaType(h.Get("Content-Type")), nil
}

func (s *registrySource) manifest(ctx context.Context, desc v1.Descriptor) ([]byte, error) {
	if desc.Size > maxManifestSize {
		return nil, fmt.Errorf("%w: manifest %s of %d bytes larger than %d", ErrLimit, desc.Digest, desc.Size, int64(maxManifestSize))
	}
	raw, _, err := s.fetchDocument(ctx, s.url("manifests", desc.Digest.String()), func(raw []byte, _ http.Header) error {
		return checkBytes(raw, desc.Digest, desc.Size)
	})
	return raw, err
}

// openBlob opens the blob desc names. Reading it resumes a cut download with
// a Range request from the bytes already read, within the retry budget.
func (s *registrySource) openBlob(ctx context.Context, desc v1.Descriptor) (io.ReadCloser, error) {
	b := &blobReader{ctx: ctx, s: s, desc: desc, st: s.newRetryState(ctx)}
	if err := b.open(); err != nil {
		return nil, err
	}
	return b, nil
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
