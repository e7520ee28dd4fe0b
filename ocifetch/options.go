package ocifetch

import (
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"runtime"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/img2ext4/img2ext4/progress"
)

// Option configures [Image] and [Prefetch]. An Option returns an error when
// its value is invalid; options that only concern one of the two functions
// are ignored by the other.
type Option func(*options) error

// DefaultJobs is the number of blobs [Prefetch] downloads at once unless
// [WithJobs] says otherwise.
const DefaultJobs = 4

// DefaultUserAgent is the User-Agent prefix sent to registries unless
// [WithUserAgent] says otherwise.
const DefaultUserAgent = "img2ext4"

// Size caps for documents read into memory.
const (
	maxManifestSize = 8 << 20  // manifests and indexes
	maxConfigSize   = 64 << 20 // image configs
	maxIndexDepth   = 4        // nested indexes
	maxArchiveFiles = 1 << 20  // entries in an oci-archive or docker-archive tar
)

// maxArchiveSize caps the decompressed size of a compressed archive; a
// variable so that fuzzing can lower it.
var maxArchiveSize int64 = 1 << 40

type options struct {
	platform      v1.Platform
	allowMismatch bool
	user, pass    string
	basicSet      bool
	keychain      authn.Keychain
	insecure      bool
	caPEM         [][]byte
	jobs          int
	tempDir       string
	progress      progress.Func
	userAgent     string
	retries       int
	retryMaxTime  time.Duration
	engineHost    string     // WithEngineHost
	blobCache     string     // directory of [WithBlobCache], or ""
	cache         *BlobCache // opened by [Image] for a registry source
}

// defaultPlatform is linux on the architecture this program runs on, with
// the usual variant for arm (v7) and arm64 (v8).
func defaultPlatform() v1.Platform {
	p := v1.Platform{OS: "linux", Architecture: runtime.GOARCH}
	switch p.Architecture {
	case "arm":
		p.Variant = "v7"
	case "arm64":
		p.Variant = "v8"
	}
	return p
}

func makeOptions(opts []Option) (*options, error) {
	o := &options{
		platform:     defaultPlatform(),
		jobs:         DefaultJobs,
		userAgent:    DefaultUserAgent,
		retries:      DefaultRetries,
		retryMaxTime: DefaultRetryMaxTime,
	}
	for _, opt := range opts {
		if opt == nil {
			continue
		}
		if err := opt(o); err != nil {
			return nil, err
		}
	}
	if o.basicSet && o.keychain != nil {
		return nil, errors.New("ocifetch: WithBasicAuth and WithKeychain are mutually exclusive")
	}
	return o, nil
}

// WithPlatform selects the platform an image index is resolved to and the
// platform a single-platform image must be for. OS and Architecture are
// required. The default is linux on the running architecture (runtime.GOARCH),
// with variant v7 on arm and v8 on arm64.
func WithPlatform(p v1.Platform) Option {
	return func(o *options) error {
		if p.OS == "" || p.Architecture == "" {
			return fmt.Errorf("ocifetch: platform %q needs an OS and an architecture", platformString(p))
		}
		o.platform = p
		return nil
	}
}

// WithAllowPlatformMismatch accepts a single-platform image whose config
// names a platform other than the wanted one. It does not affect the choice
// within an image index. The default is false: such images are refused with a
// [*PlatformError].
func WithAllowPlatformMismatch(allow bool) Option {
	return func(o *options) error {
		o.allowMismatch = allow
		return nil
	}
}

// WithBasicAuth sends user and pass to the registry, as HTTP basic
// authentication or to obtain a bearer token. It cannot be combined with
// [WithKeychain]. The default is to look credentials up in the default
// keychain (see the package documentation).
func WithBasicAuth(user, pass string) Option {
	return func(o *options) error {
		if user == "" {
			return errors.New("ocifetch: basic auth needs a user name")
		}
		o.user, o.pass, o.basicSet = user, pass, true
		return nil
	}
}

// WithKeychain looks registry credentials up in kc. It cannot be combined
// with [WithBasicAuth]. The default keychain reads podman's auth.json and then
// the Docker config, as described in the package documentation.
func WithKeychain(kc authn.Keychain) Option {
	return func(o *options) error {
		if kc == nil {
			return errors.New("ocifetch: nil keychain")
		}
		o.keychain = kc
		return nil
	}
}

// WithInsecure allows plain HTTP to any registry host and skips verification
// of registry TLS certificates. The default is false: plain HTTP is used only
// for loopback hosts and "http://" references, and certificates are verified.
func WithInsecure(insecure bool) Option {
	return func(o *options) error {
		o.insecure = insecure
		return nil
	}
}

// WithRegistryCA adds the PEM certificates in pemFile to the pool of
// certificate authorities trusted for registry TLS, on top of the system
// pool. It may be given several times. The file is read when the option is
// applied. The default is the system pool only.
func WithRegistryCA(pemFile string) Option {
	return func(o *options) error {
		b, err := os.ReadFile(pemFile)
		if err != nil {
			return fmt.Errorf("ocifetch: read registry CA: %w", err)
		}
		if !x509.NewCertPool().AppendCertsFromPEM(b) {
			return fmt.Errorf("ocifetch: registry CA %s: no PEM certificate found", pemFile)
		}
		o.caPEM = append(o.caPEM, b)
		return nil
	}
}

// WithJobs sets how many layer blobs [Prefetch] downloads at once ahead of
// their readers, from 1 to 64; a blob a reader waits for is downloaded
// beside them. The default is [DefaultJobs].
func WithJobs(n int) Option {
	return func(o *options) error {
		if n < 1 || n > 64 {
			return fmt.Errorf("ocifetch: jobs %d out of range 1..64", n)
		}
		o.jobs = n
		return nil
	}
}

// WithTempDir sets the directory in which [Prefetch] creates its temporary
// directory for downloaded blobs, and in which [Image] decompresses a
// gzip- or zstd-compressed oci-archive or docker-archive and spools the
// export of a "docker-daemon:" image (into unlinked files). The default is
// [os.TempDir].
func WithTempDir(dir string) Option {
	return func(o *options) error {
		if dir == "" {
			return errors.New("ocifetch: empty temp dir")
		}
		o.tempDir = dir
		return nil
	}
}

// WithProgress reports progress to fn: [progress.PhaseResolve] once [Image]
// has resolved the reference, and [progress.PhaseDownload] events from
// [Prefetch], at most every 100 ms per layer plus a final Complete event
// (one [progress.PhaseLocal] event for a local blob, which is not downloaded).
// Calls are serialised; fn must not block, and intermediate events are
// dropped while a previous call is still running. The default is nil: no
// progress.
func WithProgress(fn progress.Func) Option {
	return func(o *options) error {
		o.progress = fn
		return nil
	}
}

// WithUserAgent sets the User-Agent sent to registries; go-containerregistry
// appends its own product token. The default is [DefaultUserAgent].
func WithUserAgent(ua string) Option {
	return func(o *options) error {
		if ua == "" {
			return errors.New("ocifetch: empty user agent")
		}
		o.userAgent = ua
		return nil
	}
}

// WithRetries sets how many times in a row a failed registry request
// (manifest, config, blob, token or ping) is retried, from 0 to 100. Retried
// are temporary statuses (408, 429, 500, 502, 503, 504), connection resets
// and refusals, timeouts, stalls, bodies cut short and lengths that differ
// from the descriptor; a cut blob download resumes with a Range request from
// the bytes already received, and the count starts afresh whenever new bytes
// arrive. Waits between attempts grow from 250 ms, doubling up to 8 s with
// random jitter, or follow the registry's Retry-After when it asks for
// longer. Refused credentials (401, 403), missing objects (404) and
// verification failures are never retried. The default is [DefaultRetries].
func WithRetries(n int) Option {
	return func(o *options) error {
		if n < 0 || n > 100 {
			return fmt.Errorf("ocifetch: retries %d out of range 0..100", n)
		}
		o.retries = n
		return nil
	}
}

// WithRetryMaxTime bounds how long a registry request may keep failing and
// waiting before it gives up, counted from its first attempt or from the
// last time it received new bytes; a Retry-After beyond it fails at once.
// It must be positive. The default is [DefaultRetryMaxTime].
func WithRetryMaxTime(d time.Duration) Option {
	return func(o *options) error {
		if d <= 0 {
			return fmt.Errorf("ocifetch: retry max time %s must be positive", d)
		}
		o.retryMaxTime = d
		return nil
	}
}
