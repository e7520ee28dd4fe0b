package ocifetch

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/img2ext4/img2ext4/layerstream"
)

// transport names where an image comes from.
type refTransport int

const (
	transportRegistry refTransport = iota
	transportOCI
	transportOCIArchive
	transportDockerArchive
	transportArchive // a local archive named without a transport: OCI or docker, as its content says
	transportDockerDaemon
)

func (t refTransport) String() string {
	switch t {
	case transportOCI:
		return "oci"
	case transportOCIArchive:
		return "oci-archive"
	case transportDockerArchive:
		return "docker-archive"
	case transportArchive:
		return "archive"
	case transportDockerDaemon:
		return "docker-daemon"
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
	// docker-daemon transport: the image, as the engine names it, is in path.
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
var unsupportedTransports = []string{"containers-storage", "dir", "ostree", "sif", "tarball"}

// parseReference parses a skopeo-style image reference; see the package
// documentation for the forms it accepts.
func parseReference(s string) (reference, error) {
	if s == "" {
		return reference{}, fmt.Errorf("ocifetch: empty image reference")
	}
	if img, ok := strings.CutPrefix(s, "docker-daemon:"); ok {
		if err := checkEngineImage(img); err != nil {
			return reference{}, fmt.Errorf("ocifetch: parse reference %q: want docker-daemon:NAME[:TAG], NAME@DIGEST or an image ID: %w", s, err)
		}
		return reference{transport: transportDockerDaemon, path: img}, nil
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
		if r, ok, err := localReference(s); ok || err != nil {
			return r, err
		}
		if prefix, rest, ok := strings.Cut(s, ":"); ok && !strings.Contains(prefix, "/") && !startsWithPort(rest) {
			for _, u := range unsupportedTransports {
				if prefix == u {
					return reference{}, fmt.Errorf("%w: %q in %q (use docker://, docker-daemon:, oci:, oci-archive: or docker-archive:, or a fallback exporter that runs skopeo)", ErrUnsupportedTransport, prefix, s)
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
	if err := checkReferenceName(ref); err != nil {
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

// localHint names the transports a local image needs.
const localHint = "a local image is an OCI layout directory (oci:DIR[:TAG]) or an archive file (oci-archive:FILE[:TAG], docker-archive:FILE[:REF])"

// localReference recognises a local image named without a transport. A path written as
// one ("/srv/images/app", "./hello-oci", "../img.tar", with an optional ":TAG") or a
// string that cannot be a registry reference names a local image: an OCI layout
// directory, or an archive file whose content tells OCI from docker. A string that is
// also a valid registry reference ("hello-oci", "app.tar") stays a registry reference,
// unless a local image of that name exists: then it is ambiguous and refused with the
// spellings of both. ok is false when s is a registry reference.
func localReference(s string) (r reference, ok bool, err error) {
	explicit := strings.HasPrefix(s, "/") || strings.HasPrefix(s, "./") || strings.HasPrefix(s, "../") || s == "." || s == ".."
	_, refErr := name.ParseReference(s)
	if !explicit && refErr == nil {
		if kind, _ := localKind(s); kind != transportRegistry {
			return reference{}, false, fmt.Errorf("ocifetch: %q names both a local image and a registry image: write %s:%s (or ./%s) for the local one, docker://%s for the registry", s, localTransportName(kind), s, s, s)
		}
		return reference{}, false, nil
	}
	path, tag := s, ""
	kind, kerr := localKind(path)
	for i := 0; errors.Is(kerr, fs.ErrNotExist) && i < len(s); i++ {
		if s[i] == ':' && i > 0 { // PATH:TAG, the tag itself may hold colons
			if k, e := localKind(s[:i]); !errors.Is(e, fs.ErrNotExist) {
				path, tag, kind, kerr = s[:i], s[i+1:], k, e
			}
		}
	}
	switch {
	case errors.Is(kerr, fs.ErrNotExist) && !explicit:
		return reference{}, false, nil // not local: the reference's own error follows
	case kerr != nil:
		return reference{}, false, fmt.Errorf("ocifetch: local image %s: %w (%s)", path, kerr, localHint)
	case kind == transportRegistry:
		return reference{}, false, fmt.Errorf("ocifetch: local image %s: neither an OCI layout directory (no oci-layout file) nor an image archive (%s)", path, localHint)
	}
	return reference{transport: kind, path: path, tag: tag}, true, nil
}

func localTransportName(t refTransport) string {
	if t == transportArchive {
		return "oci-archive"
	}
	return t.String()
}

// localKind tells what the local path holds: an OCI layout directory (transportOCI), a
// tar file, plain or gzip- or zstd-compressed (transportArchive), or something else
// (transportRegistry). The error is the path's own.
func localKind(path string) (refTransport, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return transportRegistry, errors.Unwrap(err)
	}
	if fi.IsDir() {
		if st, err := os.Stat(path + "/oci-layout"); err == nil && st.Mode().IsRegular() {
			return transportOCI, nil
		}
		return transportRegistry, nil
	}
	if !fi.Mode().IsRegular() {
		return transportRegistry, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return transportRegistry, errors.Unwrap(err)
	}
	defer f.Close()
	head := make([]byte, 512)
	n, _ := io.ReadFull(f, head)
	head = head[:n]
	if layerstream.Sniff(head) != layerstream.None || (n == 512 && string(head[257:262]) == "ustar") {
		return transportArchive, nil
	}
	return transportRegistry, nil
}
