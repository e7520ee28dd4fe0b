package exporter

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/img2ext4/img2ext4/ocifetch"
)

// Mode chooses how [Image] fetches an image.
type Mode string

const (
	// Auto reads natively when it can, and through skopeo or docker only what it cannot.
	Auto Mode = "auto"
	// Native never runs a program.
	Native Mode = "native"
	// Docker runs "docker save" for "docker-daemon:" references.
	Docker Mode = "docker"
	// Skopeo runs "skopeo copy" into a temporary OCI layout.
	Skopeo Mode = "skopeo"
)

// ParseMode returns the Mode named s.
func ParseMode(s string) (Mode, error) {
	switch m := Mode(s); m {
	case Auto, Native, Docker, Skopeo:
		return m, nil
	}
	return "", fmt.Errorf("exporter: unknown mode %q (want auto, native, docker or skopeo)", s)
}

// ErrMissingProgram reports that an exporter program is not installed; the error names
// the Debian package to install.
var ErrMissingProgram = errors.New("exporter: program not installed")

// ErrUnsupported reports a reference the chosen exporter cannot read.
var ErrUnsupported = errors.New("exporter: reference not supported by this exporter")

// packages names the Debian package of each program.
var packages = map[string]string{"skopeo": "skopeo", "docker": "docker.io"}

// Image resolves ref through the exporter mode selects and returns the image, read by
// [ocifetch.Image] with opts, and a release function that removes what an exporter wrote
// and closes the temporary file ocifetch may read the image from ([ocifetch.Release]).
// The image's layers are read from those files: call release only once they have been
// read, and always, also after an error of the caller's. ctx bounds the programs run.
func Image(ctx context.Context, ref string, mode Mode, opts ...ocifetch.Option) (img v1.Image, release func() error, err error) {
	none := func() error { return nil }
	switch mode {
	case Native:
		img, err := ocifetch.Image(ctx, ref, opts...)
		return img, releaser(img), err
	case Skopeo:
		return viaSkopeo(ctx, ref, opts)
	case Docker:
		return viaDocker(ctx, ref, opts)
	case Auto:
		img, err := ocifetch.Image(ctx, ref, opts...)
		switch {
		case errors.Is(err, ocifetch.ErrUnsupportedTransport):
			return viaSkopeo(ctx, ref, opts)
		case errors.Is(err, ocifetch.ErrEngineUnreachable) && strings.HasPrefix(ref, "docker-daemon:"):
			if _, lerr := exec.LookPath("docker"); lerr != nil {
				return nil, none, err // the engine's own error says what to do
			}
			dimg, release, derr := viaDocker(ctx, ref, opts)
			if derr != nil {
				return nil, release, fmt.Errorf("%w; the docker save fallback failed too: %v", err, derr)
			}
			return dimg, release, nil
		}
		return img, releaser(img), err
	}
	return nil, none, fmt.Errorf("exporter: unknown mode %q", mode)
}

// releaser returns a function that releases the temporary file img may hold.
func releaser(img v1.Image) func() error {
	if img == nil {
		return func() error { return nil }
	}
	return func() error { return ocifetch.Release(img) }
}

// skopeoTransports are the transports skopeo 1.9 knows.
var skopeoTransports = []string{"containers-storage", "dir", "docker", "docker-archive", "docker-daemon", "oci", "oci-archive", "ostree", "sif", "tarball"}

// skopeoRef spells ref for skopeo: a reference without a transport is a registry's, and
// one written with "http://" a plain-HTTP registry's. plainHTTP is true for those and for
// loopback registries, which ocifetch also reads over plain HTTP.
func skopeoRef(ref string) (src string, plainHTTP bool, err error) {
	if rest, ok := strings.CutPrefix(ref, "http://"); ok {
		return "docker://" + rest, true, nil
	}
	if rest, ok := strings.CutPrefix(ref, "https://"); ok {
		return "docker://" + rest, false, nil
	}
	if prefix, _, ok := strings.Cut(ref, ":"); ok {
		for _, t := range skopeoTransports {
			if prefix == t && t != "docker" {
				return ref, false, nil
			}
		}
	}
	if strings.HasPrefix(ref, "/") || strings.HasPrefix(ref, "./") || strings.HasPrefix(ref, "../") {
		return "", false, fmt.Errorf("%w: %s: skopeo needs a local image's transport written out (oci:, oci-archive:, docker-archive:)", ErrUnsupported, ref)
	}
	rest := strings.TrimPrefix(ref, "docker://")
	r, err := name.ParseReference(rest)
	if err != nil {
		return "", false, fmt.Errorf("%w: %s: %v", ErrUnsupported, ref, err)
	}
	return "docker://" + rest, isLoopback(r.Context().RegistryStr()), nil
}

// isLoopback reports whether a registry host (with an optional port) is on loopback.
func isLoopback(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// viaSkopeo copies ref into an OCI layout with skopeo and reads it from there.
func viaSkopeo(ctx context.Context, ref string, opts []ocifetch.Option) (v1.Image, func() error, error) {
	src, plainHTTP, err := skopeoRef(ref)
	if err != nil {
		return nil, func() error { return nil }, err
	}
	return export(ctx, "skopeo", ref, opts, func(s ocifetch.Settings, dir string) ([]string, string, error) {
		layout := filepath.Join(dir, "layout")
		args := []string{"--override-os", s.Platform.OS, "--override-arch", s.Platform.Architecture}
		if s.Platform.Variant != "" {
			args = append(args, "--override-variant", s.Platform.Variant)
		}
		args = append(args, "copy", "--quiet")
		if plainHTTP {
			args = append(args, "--src-tls-verify=false")
		}
		if strings.HasPrefix(src, "docker-daemon:") {
			// skopeo's docker-daemon transport does not read DOCKER_HOST.
			args = append(args, "--src-daemon-host", s.EngineHost)
		}
		if rest, ok := strings.CutPrefix(src, "docker://"); ok && s.Username != "" {
			// The credentials go in a file only this user can read, not on a command
			// line that every user sees; export removes it once skopeo is done.
			auth, err := authFile(dir, rest, s.Username, s.Password)
			if err != nil {
				return nil, "", err
			}
			args = append(args, "--src-authfile", auth)
		}
		args = append(args, src, "oci:"+layout+":image")
		return args, "oci:" + layout + ":image", nil
	})
}

// authFileName is the file in an export's private directory that holds the registry
// credentials for skopeo, removed as soon as skopeo exits.
const authFileName = "auth.json"

// authFile writes the credentials user and pass for the registry of ref (without a
// transport) into dir as a containers-auth.json(5) file, mode 0600, and returns its path.
func authFile(dir, ref, user, pass string) (string, error) {
	r, err := name.ParseReference(ref)
	if err != nil {
		return "", fmt.Errorf("%w: %s: %v", ErrUnsupported, ref, err)
	}
	host := r.Context().RegistryStr()
	entry := map[string]string{"auth": base64.StdEncoding.EncodeToString([]byte(user + ":" + pass))}
	auths := map[string]any{host: entry}
	if host == name.DefaultRegistry {
		auths["docker.io"] = entry // the key containers/image looks up for Docker Hub
	}
	b, err := json.Marshal(map[string]any{"auths": auths})
	if err != nil {
		return "", fmt.Errorf("exporter: encode credentials: %w", err)
	}
	p := filepath.Join(dir, authFileName)
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", fmt.Errorf("exporter: write credentials for skopeo: %w", err)
	}
	_, err = f.Write(b)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", fmt.Errorf("exporter: write credentials for skopeo %s: %w", p, err)
	}
	return p, nil
}

// viaDocker saves a "docker-daemon:IMAGE" reference with docker save and reads the
// archive.
func viaDocker(ctx context.Context, ref string, opts []ocifetch.Option) (v1.Image, func() error, error) {
	name, ok := strings.CutPrefix(ref, "docker-daemon:")
	if !ok || name == "" {
		return nil, func() error { return nil }, fmt.Errorf("%w: %s: the docker exporter reads docker-daemon:IMAGE references", ErrUnsupported, ref)
	}
	return export(ctx, "docker", ref, opts, func(s ocifetch.Settings, dir string) ([]string, string, error) {
		archive := filepath.Join(dir, "image.tar")
		return []string{"save", "--output", archive, name}, "docker-archive:" + archive, nil
	})
}

// export runs program with the arguments args gives for a new temporary directory, then
// reads the image from the local reference args returns.
func export(ctx context.Context, program, ref string, opts []ocifetch.Option, args func(s ocifetch.Settings, dir string) ([]string, string, error)) (img v1.Image, release func() error, err error) {
	release = func() error { return nil }
	s, err := ocifetch.SettingsOf(opts...)
	if err != nil {
		return nil, release, err
	}
	path, err := exec.LookPath(program)
	if err != nil {
		return nil, release, fmt.Errorf("%w: %s is needed to read %s but is not on PATH: install the Debian package %s", ErrMissingProgram, program, ref, packages[program])
	}
	dir, err := os.MkdirTemp(s.TempDir, "img2ext4-"+program+"-")
	if err != nil {
		return nil, release, fmt.Errorf("exporter: create temp dir: %w", err)
	}
	release = func() error { return os.RemoveAll(dir) }
	defer func() {
		if err != nil {
			release()
			release = func() error { return nil }
		}
	}()
	argv, local, err := args(s, dir)
	if err != nil {
		return nil, release, err
	}
	cmd := exec.CommandContext(ctx, path, argv...)
	// skopeo keeps its temporary files under TMPDIR, which release removes.
	cmd.Env = append(os.Environ(), "TMPDIR="+dir)
	if s.EngineHost != os.Getenv("DOCKER_HOST") && s.EngineHost != ocifetch.DefaultEngineHost {
		// An endpoint chosen by option; otherwise the program keeps its own
		// choice (DOCKER_HOST, or the docker CLI's current context).
		cmd.Env = append(cmd.Env, "DOCKER_HOST="+s.EngineHost)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &limitedBuffer{buf: &stderr, max: 8 << 10}
	cmd.WaitDelay = 10 * time.Second
	err = cmd.Run()
	if rerr := os.Remove(filepath.Join(dir, authFileName)); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
		return nil, release, fmt.Errorf("exporter: remove the credentials given to %s: %w", program, rerr)
	}
	if err != nil {
		if ctx.Err() != nil {
			return nil, release, ctx.Err()
		}
		return nil, release, fmt.Errorf("exporter: %s %s: %w: %s", program, strings.Join(argv, " "), err, strings.TrimSpace(stderr.String()))
	}
	img, err = ocifetch.Image(ctx, local, opts...)
	if err != nil {
		return nil, release, fmt.Errorf("read the image %s exported from %s: %w", program, ref, err)
	}
	removeDir := release
	return img, func() error { return errors.Join(ocifetch.Release(img), removeDir()) }, nil
}

// limitedBuffer keeps the first max bytes written to it.
type limitedBuffer struct {
	buf *bytes.Buffer
	max int
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := l.max - l.buf.Len(); room > 0 {
		l.buf.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}
