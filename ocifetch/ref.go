package ocifetch

import (
	"fmt"
	"os"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
)

// transport names where an image comes from.
type refTransport int

const (
	transportRegistry refTransport = iota
	transportOCI
	transportOCIArchive
	transportDockerArchive
)

func (t refTransport) String() string {
	switch t {
	case transportOCI:
		return "oci"
	case transportOCIArchive:
		return "oci-archive"
	case transportDockerArchive:
		return "docker-archive"
	default:
		return "docker"
	}
}

// scheme restricts the URL schemes used for a registry.
type scheme int

const (
	schemeAuto  scheme = iota // https, plain HTTP for loopback or WithInsecure
	schemeHTTP                // "http://" reference: plain HTTP only
	schemeHTTPS               // "https://" reference: TLS only
)

// reference is a parsed image reference.
type reference struct {
	transport refTransport
	// registry transport
	ref    name.Reference
	scheme scheme
	// local transports
	path string // directory or archive file
	tag  string // OCI ref name, docker-archive reference, or "" for the only image
}

func (r reference) String() string {
	if r.transport == transportRegistry {
		return r.ref.String()
	}
	if r.tag == "" {
		return r.transport.String() + ":" + r.path
	}
	return r.transport.String() + ":" + r.path + ":" + r.tag
}

// unsupportedTransports are skopeo transports this package does not read.
var unsupportedTransports = []string{"containers-storage", "dir", "docker-daemon", "ostree", "sif", "tarball"}

// parseReference parses a skopeo-style image reference; see the package
// documentation for the forms it accepts.
func parseReference(s string) (reference, error) {
	if s == "" {
		return reference{}, fmt.Errorf("ocifetch: empty image reference")
	}
	for _, t := range []refTransport{transportOCIArchive, transportOCI, transportDockerArchive} {
		if rest, ok := strings.CutPrefix(s, t.String()+":"); ok {
			path, tag := splitPathTag(rest)
			if path == "" {
				return reference{}, fmt.Errorf("ocifetch: parse reference %q: missing path", s)
			}
			return reference{transport: t, path: path, tag: tag}, nil
		}
	}
	var (
		sch  = schemeAuto
		opts []name.Option
	)
	switch {
	case strings.HasPrefix(s, "docker://"):
		s = strings.TrimPrefix(s, "docker://")
	case strings.HasPrefix(s, "http://"):
		s, sch = strings.TrimPrefix(s, "http://"), schemeHTTP
		opts = append(opts, name.Insecure)
	case strings.HasPrefix(s, "https://"):
		s, sch = strings.TrimPrefix(s, "https://"), schemeHTTPS
	default:
		if prefix, rest, ok := strings.Cut(s, ":"); ok && !strings.Contains(prefix, "/") && !startsWithPort(rest) {
			for _, u := range unsupportedTransports {
				if prefix == u {
					return reference{}, fmt.Errorf("%w: %q in %q (use docker://, oci:, oci-archive: or docker-archive:)", ErrUnsupportedTransport, prefix, s)
				}
			}
		}
	}
	if sch != schemeAuto && !strings.Contains(s, "/") {
		return reference{}, fmt.Errorf("ocifetch: parse reference %q: an http:// or https:// reference needs host/repository", s)
	}
	ref, err := name.ParseReference(s, opts...)
	if err != nil {
		return reference{}, fmt.Errorf("ocifetch: parse reference %q: %w", s, err)
	}
	return reference{transport: transportRegistry, ref: ref, scheme: sch}, nil
}

// splitPathTag splits "PATH[:TAG]" at the first colon, as skopeo does, unless
// the whole string names an existing file, whose name may then hold colons.
func splitPathTag(s string) (path, tag string) {
	if _, err := os.Stat(s); err == nil {
		return s, ""
	}
	path, tag, _ = strings.Cut(s, ":")
	return path, tag
}

// startsWithPort reports whether s begins with a port number followed by a
// slash or the end, as in the "5000/repo" of "host:5000/repo".
func startsWithPort(s string) bool {
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	return i > 0 && (i == len(s) || s[i] == '/')
}
