package exporter

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

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
// [ocifetch.Image] with opts, and a release function that removes what an exporter wrote.
// The image's layers are read from those files: call release only once they have been
// read, and always, also after an error of the caller's. ctx bounds the programs run.
func Image(ctx context.Context, ref string, mode Mode, opts ...ocifetch.Option) (img v1.Image, release func() error, err error) {
	none := func() error { return nil }
	switch mode {
	case Native:
		img, err := ocifetch.Image(ctx, ref, opts...)
		return img, none, err
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
		return img, none, err
	}
	return nil, none, fmt.Errorf("exporter: unknown mode %q", mode)
}

// skopeoTransports are the transports skopeo 1.9 knows.
var skopeoTransports = []string{"containers-storage", "dir", "docker", "docker-archive", "docker-daemon", "oci", "oci-archive", "ostree", "sif", "tarball"}

// skopeoRef spells ref for skopeo: a reference without a transport is a registry's.
func skopeoRef(ref string) (string, error) {
	if strings.HasPrefix(ref, "http://") || strings.HasPrefix(ref, "https://") {
		return "", fmt.Errorf("%w: %s: skopeo reads registries as docker://HOST/REPO", ErrUnsupported, ref)
	}
	if prefix, _, ok := strings.Cut(ref, ":"); ok {
		for _, t := range skopeoTransports {
			if prefix == t {
				return ref, nil
			}
		}
	}
	return "docker://" + ref, nil
}

// viaSkopeo copies ref into an OCI layout with skopeo and reads it from there.
func viaSkopeo(ctx context.Context, ref string, opts []ocifetch.Option) (v1.Image, func() error, error) {
	src, err := skopeoRef(ref)
	if err != nil {
		return nil, func() error { return nil }, err
	}
	return export(ctx, "skopeo", ref, opts, func(s ocifetch.Settings, dir string) ([]string, string) {
		layout := filepath.Join(dir, "layout")
		args := []string{"--override-os", s.Platform.OS, "--override-arch", s.Platform.Architecture}
		if s.Platform.Variant != "" {
			args = append(args, "--override-variant", s.Platform.Variant)
		}
		args = append(args, "copy", "--quiet")
		if strings.HasPrefix(src, "docker-daemon:") {
			// skopeo's docker-daemon transport does not read DOCKER_HOST.
			args = append(args, "--src-daemon-host", s.EngineHost)
		}
		args = append(args, src, "oci:"+layout+":image")
		return args, "oci:" + layout + ":image"
	})
}

// viaDocker saves a "docker-daemon:IMAGE" reference with docker save and reads the
// archive.
func viaDocker(ctx context.Context, ref string, opts []ocifetch.Option) (v1.Image, func() error, error) {
	name, ok := strings.CutPrefix(ref, "docker-daemon:")
	if !ok || name == "" {
		return nil, func() error { return nil }, fmt.Errorf("%w: %s: the docker exporter reads docker-daemon:IMAGE references", ErrUnsupported, ref)
	}
	return export(ctx, "docker", ref, opts, func(s ocifetch.Settings, dir string) ([]string, string) {
		archive := filepath.Join(dir, "image.tar")
		return []string{"save", "--output", archive, name}, "docker-archive:" + archive
	})
}

// export runs program with the arguments args gives for a new temporary directory, then
// reads the image from the local reference args returns.
func export(ctx context.Context, program, ref string, opts []ocifetch.Option, args func(s ocifetch.Settings, dir string) ([]string, string)) (img v1.Image, release func() error, err error) {
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
	argv, local := args(s, dir)
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
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return nil, release, ctx.Err()
		}
		return nil, release, fmt.Errorf("exporter: %s %s: %w: %s", program, strings.Join(argv, " "), err, strings.TrimSpace(stderr.String()))
	}
	img, err = ocifetch.Image(ctx, local, opts...)
	if err != nil {
		return nil, release, fmt.Errorf("read the image %s exported from %s: %w", program, ref, err)
	}
	return img, release, nil
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
