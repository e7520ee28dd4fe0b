package ocifetch

import (
	"archive/tar"
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path"
	"regexp"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/img2ext4/img2ext4/layerstream"
	"github.com/img2ext4/img2ext4/progress"
)

// DefaultEngineHost is the Docker Engine API endpoint read for "docker-daemon:"
// references when neither [WithEngineHost] nor DOCKER_HOST names one.
const DefaultEngineHost = "unix:///var/run/docker.sock"

// ErrEngineUnreachable reports that no container engine answered at the
// endpoint a "docker-daemon:" reference is read from: the engine is stopped,
// or the socket is elsewhere.
var ErrEngineUnreachable = errors.New("ocifetch: container engine not reachable")

// WithEngineHost sets the Docker Engine API endpoint "docker-daemon:"
// references are read from: "unix:///path/to/socket", or "tcp://host:port"
// for an engine listening on plain HTTP. Podman's "podman system service"
// serves the same API. The default is the DOCKER_HOST environment variable,
// or [DefaultEngineHost] when it is unset.
func WithEngineHost(host string) Option {
	return func(o *options) error {
		if _, _, err := engineEndpoint(host); err != nil {
			return err
		}
		o.engineHost = host
		return nil
	}
}

// Settings are the choices a set of options makes that matter to programs
// run on the same image, such as the fallback exporters of package exporter.
type Settings struct {
	// Platform is the platform an index is resolved to ([WithPlatform]).
	Platform v1.Platform
	// TempDir is the directory for temporary files ([WithTempDir]); "" means
	// [os.TempDir].
	TempDir string
	// EngineHost is the engine endpoint of "docker-daemon:" references
	// ([WithEngineHost]).
	EngineHost string
	// Username and Password are the registry credentials of [WithBasicAuth];
	// Username is "" without it.
	Username, Password string
}

// SettingsOf returns what opts choose, defaults filled in. It fails when an
// option is invalid, as [Image] would.
func SettingsOf(opts ...Option) (Settings, error) {
	o, err := makeOptions(opts)
	if err != nil {
		return Settings{}, err
	}
	s := Settings{Platform: o.platform, TempDir: o.tempDir, EngineHost: o.engine()}
	if o.basicSet {
		s.Username, s.Password = o.user, o.pass
	}
	return s, nil
}

// engine returns the engine endpoint to use.
func (o *options) engine() string {
	if o.engineHost != "" {
		return o.engineHost
	}
	if h := os.Getenv("DOCKER_HOST"); h != "" {
		return h
	}
	return DefaultEngineHost
}

// engineEndpoint splits an engine host into the network and address to dial.
func engineEndpoint(host string) (network, addr string, err error) {
	u, err := url.Parse(host)
	switch {
	case err != nil:
		return "", "", fmt.Errorf("ocifetch: engine host %q: %w", host, err)
	case u.Scheme == "unix" && u.Path != "":
		return "unix", u.Path, nil
	case u.Scheme == "tcp" && u.Host != "" && (u.Path == "" || u.Path == "/"):
		if _, _, err := net.SplitHostPort(u.Host); err != nil {
			return "", "", fmt.Errorf("ocifetch: engine host %q: %w", host, err)
		}
		return "tcp", u.Host, nil
	}
	return "", "", fmt.Errorf("ocifetch: engine host %q: want unix:///path/to/socket or tcp://host:port", host)
}

// imageID matches an engine's image ID written in full.
var imageID = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)

// checkEngineImage checks the IMAGE of a "docker-daemon:IMAGE" reference: a
// registry reference ("alpine", "host:5000/app:v1", "app@sha256:…") or an
// image ID ("sha256:…").
func checkEngineImage(s string) error {
	if imageID.MatchString(s) {
		return nil
	}
	ref, err := name.ParseReference(s)
	if err != nil {
		return err
	}
	return checkReferenceName(ref)
}

// engineClient talks HTTP to a Docker Engine API endpoint.
type engineClient struct {
	host string
	hc   *http.Client
	base string // scheme and host of request URLs
}

func newEngineClient(host string) (*engineClient, error) {
	if os.Getenv("DOCKER_TLS_VERIFY") != "" && host == os.Getenv("DOCKER_HOST") {
		return nil, fmt.Errorf("ocifetch: engine %s: DOCKER_TLS_VERIFY is set, but engine connections over TLS are not supported; use the engine's unix socket", host)
	}
	network, addr, err := engineEndpoint(host)
	if err != nil {
		return nil, err
	}
	d := &net.Dialer{Timeout: 10 * time.Second}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return d.DialContext(ctx, network, addr)
		},
		// No ResponseHeaderTimeout: podman writes a whole export to disk before it
		// answers. ctx bounds the wait.
		DisableCompression: true,
	}
	c := &engineClient{host: host, hc: &http.Client{Transport: tr}, base: "http://docker"}
	if network == "tcp" {
		c.base = "http://" + addr
	}
	return c, nil
}

// close closes the idle connection left by the last request.
func (c *engineClient) close() { c.hc.CloseIdleConnections() }

// get sends GET path to the engine. A response other than 200 becomes an
// error naming the engine's message; the caller closes the body of a 200.
func (c *engineClient) get(ctx context.Context, path string, what string) (io.ReadCloser, error) {
	u := c.base + (&url.URL{Path: path}).EscapedPath()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("%w at %s (%v): start the engine (systemctl start docker, or podman system service --time=0 unix:///run/podman/podman.sock) or set DOCKER_HOST to the socket it listens on", ErrEngineUnreachable, c.host, unwrapURLError(err))
	}
	if resp.StatusCode == http.StatusOK {
		return resp.Body, nil
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	var msg struct {
		Message string `json:"message"`
	}
	text := strings.TrimSpace(string(body))
	if json.Unmarshal(body, &msg) == nil && msg.Message != "" {
		text = msg.Message
	}
	if resp.StatusCode == http.StatusNotFound {
		return nil, fmt.Errorf("%w: %s in the engine at %s (%s): pull or load it into the engine first", ErrNotFound, what, c.host, text)
	}
	return nil, fmt.Errorf("ocifetch: %s from the engine at %s: status %d: %s", what, c.host, resp.StatusCode, text)
}

// unwrapURLError drops the *url.Error layer, which repeats the request URL.
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// resolveEngineImage exports the image r names from the engine and reads the
// export as a docker archive.
//
// Both Docker and podman write the export's manifest.json (and index.json)
// after the layers it lists, and an image's manifest, with the order and
// sizes of its layers, is needed before its first layer is read. So the
// export is spooled as it streams in: every file body is written once, in
// arrival order, to one unlinked temporary file under the temp dir, small
// documents included, and the layers are then read from it in place. Nothing
// else is copied, and the file disappears with the last reader.
func resolveEngineImage(ctx context.Context, r reference, o *options) (*image, error) {
	c, err := newEngineClient(o.engine())
	if err != nil {
		return nil, err
	}
	defer c.close()
	img := r.path
	// Inspect first: it tells a missing image apart from an export that
	// fails half-way, at the cost of one small request.
	if _, err := c.inspect(ctx, img, o); err != nil {
		return nil, err
	}
	rc, err := c.get(ctx, "/images/"+img+"/get", "export of image "+img)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	label := "docker-daemon:" + img
	var in io.Reader = rc
	if o.progress != nil {
		in = &exportProgress{r: rc, fn: o.progress, start: time.Now()}
	}
	fsys, err := spoolTar(ctx, in, label, o.tempDir)
	if err != nil {
		return nil, fmt.Errorf("export image %s from the engine at %s: %w", img, c.host, err)
	}
	if fsys.has("index.json") && fsys.has("oci-layout") {
		src := &layoutSource{fs: fsys, name: label}
		return src.resolve(ctx, "", o)
	}
	return resolveDockerArchiveFS(ctx, fsys, label, "", o)
}

// inspect asks the engine about img, checks its platform against o, and
// returns its image ID.
func (c *engineClient) inspect(ctx context.Context, img string, o *options) (v1.Hash, error) {
	rc, err := c.get(ctx, "/images/"+img+"/json", "image "+img)
	if err != nil {
		return v1.Hash{}, err
	}
	raw, err := readCapped(rc, maxConfigSize, "image inspect")
	rc.Close()
	if err != nil {
		return v1.Hash{}, fmt.Errorf("inspect image %s in the engine at %s: %w", img, c.host, err)
	}
	var inspect struct {
		ID                        string `json:"Id"`
		Os, Architecture, Variant string
	}
	if err := json.Unmarshal(raw, &inspect); err != nil {
		return v1.Hash{}, fmt.Errorf("inspect image %s in the engine at %s: %w", img, c.host, err)
	}
	if !imageID.MatchString(inspect.ID) {
		return v1.Hash{}, fmt.Errorf("inspect image %s in the engine at %s: unexpected image ID %q", img, c.host, inspect.ID)
	}
	// Refuse another platform before exporting; the config is checked again after.
	if err := checkPlatform(&v1.ConfigFile{OS: inspect.Os, Architecture: inspect.Architecture, Variant: inspect.Variant}, o); err != nil {
		return v1.Hash{}, err
	}
	return v1.NewHash(inspect.ID)
}

// resolveEngine fills res for a "docker-daemon:" reference with one inspect
// request: the digest is the engine's image ID (the config's digest, or the
// manifest's with Docker's containerd image store), which names the image's
// content, and Pinned names the image by that ID, so that a tag moved in the
// engine meanwhile does not change what is converted.
func resolveEngine(ctx context.Context, r reference, o *options, res *Resolved) (*Resolved, error) {
	c, err := newEngineClient(o.engine())
	if err != nil {
		return nil, err
	}
	defer c.close()
	id, err := c.inspect(ctx, r.path, o)
	if err != nil {
		return nil, fmt.Errorf("resolve image %s: %w", r, err)
	}
	res.Digest, res.Pinned = id, "docker-daemon:"+id.String()
	return res, nil
}

// exportProgress reports the bytes of an engine export read so far as
// [progress.PhaseResolve] events, at most every 100 ms: the export is part of
// resolving the image, whose layers it lists only at its end.
type exportProgress struct {
	r     io.Reader
	fn    progress.Func
	start time.Time
	last  time.Time
	done  int64
}

func (p *exportProgress) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.done += int64(n)
	if now := time.Now(); now.Sub(p.last) >= 100*time.Millisecond {
		p.last = now
		el := now.Sub(p.start)
		p.fn(progress.Event{Phase: progress.PhaseResolve, Layer: -1, Total: -1, Done: p.done, Elapsed: el,
			BytesPerSec: float64(p.done) / el.Seconds()})
	}
	return n, err
}

// spoolTar reads the tar stream r to its end, writing every regular file's
// body to an unlinked temporary file under tempDir ("" for [os.TempDir]),
// and returns a tarFS serving them from it. A gzip- or zstd-compressed
// stream is decompressed on the way. label names the stream in messages.
func spoolTar(ctx context.Context, r io.Reader, label, tempDir string) (*tarFS, error) {
	br := bufio.NewReaderSize(r, 1<<20)
	head, _ := br.Peek(4)
	var in io.Reader = br
	if layerstream.Sniff(head) != layerstream.None {
		zr, err := layerstream.Decompress(br)
		if err != nil {
			return nil, err
		}
		defer zr.Close()
		in = zr
	}
	tmp, err := os.CreateTemp(tempDir, "ocifetch-engine-")
	if err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	// Unlink at once: the open descriptor keeps the data, and nothing is
	// left behind however the process ends.
	os.Remove(tmp.Name())
	t := &tarFS{path: label, files: map[string]tarEntry{}, shared: tmp}
	if err := t.spool(ctx, in, tmp); err != nil {
		tmp.Close()
		return nil, err
	}
	return t, nil
}

// spool records the regular files of the tar read from r, copying their
// bodies to the end of w, which starts empty.
func (t *tarFS) spool(ctx context.Context, r io.Reader, w *os.File) error {
	symlinks := map[string]string{} // name to cleaned target
	tr := tar.NewReader(r)
	bw := bufio.NewWriterSize(w, 1<<20)
	var off int64
	for n := 0; ; n++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		if n >= maxArchiveFiles {
			return fmt.Errorf("%w: %s has more than %d entries", ErrLimit, t.path, maxArchiveFiles)
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			t.resolveSymlinks(symlinks)
			if err := bw.Flush(); err != nil {
				return fmt.Errorf("spool: %w", err)
			}
			return nil
		}
		if err != nil {
			return fmt.Errorf("read %s: %w", t.path, err)
		}
		name := cleanTarName(hdr.Name)
		switch hdr.Typeflag {
		case tar.TypeReg:
			if hdr.Size > maxArchiveSize-off {
				return fmt.Errorf("%w: %s holds more than %d bytes", ErrLimit, t.path, maxArchiveSize)
			}
			m, err := io.Copy(bw, tr)
			if err != nil {
				return fmt.Errorf("read %s: %s: %w", t.path, name, err)
			}
			t.files[name] = tarEntry{offset: off, size: m}
			off += m
		case tar.TypeLink:
			if e, ok := t.files[cleanTarName(hdr.Linkname)]; ok {
				t.files[name] = e
			}
		case tar.TypeSymlink:
			target := hdr.Linkname
			if !path.IsAbs(target) {
				target = path.Join(path.Dir(name), target)
			}
			symlinks[name] = cleanTarName(target)
		}
	}
}

// Release closes the temporary file an image from [Image] reads its blobs from,
// if it has one: the spooled export of a "docker-daemon:" image, or the
// decompressed copy of a gzip- or zstd-compressed archive. Those files are
// unlinked when made, so closing them gives their space back at once rather
// than when the garbage collector finds them. The image's blobs cannot be read
// after. Other images are left alone; Release returns nil for them.
func Release(img v1.Image) error {
	i, ok := img.(*image)
	if !ok {
		return nil
	}
	var fsys *tarFS
	switch s := i.src.(type) {
	case *archiveSource:
		fsys = s.fs
	case *layoutSource:
		fsys, _ = s.fs.(*tarFS)
	}
	if fsys == nil || fsys.shared == nil {
		return nil
	}
	if err := fsys.shared.Close(); err != nil && !errors.Is(err, os.ErrClosed) {
		return fmt.Errorf("release %s: %w", fsys.path, err)
	}
	return nil
}
