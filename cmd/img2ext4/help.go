package main

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/spf13/pflag"
)

const helpHead = `img2ext4 turns a container image into an ext4 filesystem image, a root filesystem
directory or a flattened tar, with no root, no loop mount and no external programs
(sources only skopeo reads, such as podman's image store, run skopeo: see --exporter).

Usage:
  img2ext4 [flags] SOURCE OUTPUT
  img2ext4 --store DIR [flags] SOURCE [OUTPUT]
  img2ext4 store ls|inspect|rm|prune|verify --store DIR ...   (see img2ext4 store --help)

SOURCE is one of:
  NAME[:TAG|@DIGEST]         a registry image: alpine:3.20, ghcr.io/org/app@sha256:...
                             (docker:// may lead; http://HOST/NAME for a plain-HTTP registry)
  oci:DIR[:TAG]              an OCI image layout directory
  oci-archive:FILE[:TAG]     a tar of an OCI image layout
  docker-archive:FILE[:REF]  a tar written by "docker save"
  docker-daemon:IMAGE        an image in a Docker or podman engine, read over its API
                             socket (DOCKER_HOST, default unix:///var/run/docker.sock)
  containers-storage:IMAGE   podman's image store, and skopeo's other transports, through
                             "skopeo copy" (see --exporter)

OUTPUT is the ext4 image file (--format ext4, the default), a directory that does not
exist or is empty (--format dir), or a tar file, "-" for standard output (--format tar).
A file output appears only when complete: an error or a signal leaves nothing new behind.

Examples:
  # The smallest ext4 image that holds alpine, for this machine's architecture
  img2ext4 alpine:3.20 alpine.img

  # A 2 GiB image for an arm64 guest, with an init injected and the launch config saved
  img2ext4 --platform linux/arm64 --size 2G --add ./init:/sbin/init:0755 \
      --config-out app.json registry.example.com/app:1.4 app.img

  # From a local OCI layout, with 20% free space and a volume label
  img2ext4 --free 20% --label rootfs oci:./layout:latest rootfs.img

  # A root filesystem directory, or a flattened tar on standard output
  img2ext4 --format dir docker.io/library/debian:12 ./rootfs
  img2ext4 --format tar -q alpine:3.20 - | tar -tv

  # Trust a company proxy's root CA in every trust store of the image (PEM bundles,
  # OpenSSL hash links, Java keystores, Python certifi); --config-out adds ca_env hints
  img2ext4 --ca-cert corp-root.pem --config-out app.json python:3.12 app.img

  # Through an artifact store: the first run converts, later runs (and other processes
  # asking at the same time) copy the stored image; without OUTPUT, print its path
  img2ext4 --store /var/lib/img2ext4 alpine:3.20 alpine.img
  img=$(img2ext4 -q --store /var/lib/img2ext4 alpine:3.20)

  # A private registry, the password read from standard input
  printf '%s' "$TOKEN" | img2ext4 --username ci --password-stdin registry.example.com/app:1 app.img

  # Publish the image to a registry as an OCI artifact (2 MiB zstd chunks), pull it on
  # another host; or let conversions share a registry cache (see "img2ext4 push --help")
  img2ext4 push --subject registry.example.com/app:1 app.img registry.example.com/app-ext4:1
  img2ext4 pull registry.example.com/app-ext4:1 app.img
  img2ext4 --cache-from registry.example.com/app-ext4 --cache-to registry.example.com/app-ext4 \
      registry.example.com/app:1 app.img

`

const helpTail = `
Sizes are bytes or a number with K, M, G or T (powers of 1024): 4096, 512M, 2G.
Credentials otherwise come from podman's auth.json (REGISTRY_AUTH_FILE) and the Docker
config (DOCKER_CONFIG, ~/.docker/config.json, credential helpers).

Exit status: 0 success, 1 failure, 2 usage error, 130 interrupted (SIGINT),
143 terminated (SIGTERM).
`

// helpText is what -h and --help print: a description, examples and the flags, the
// options that apply to ext4 output alone in their own group.
func helpText(fs *pflag.FlagSet) string {
	var general, ext4, limits []*pflag.Flag
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Hidden {
			return
		}
		if strings.HasPrefix(f.Name, "max-") {
			limits = append(limits, f)
		} else if strings.HasPrefix(f.Usage, "ext4: ") {
			ext4 = append(ext4, f)
		} else {
			general = append(general, f)
		}
	})
	var b strings.Builder
	b.WriteString(helpHead)
	b.WriteString("Flags:\n")
	writeFlags(&b, general)
	b.WriteString("\next4 output (--format ext4 only):\n")
	writeFlags(&b, ext4)
	b.WriteString("\nLimits on what an image may make the conversion do (an error names the flag to raise):\n")
	writeFlags(&b, limits)
	b.WriteString(helpTail)
	return b.String()
}

// writeFlags writes one aligned line per flag: its names, its argument, its usage and a
// default when the default is not the zero value.
func writeFlags(b *strings.Builder, flags []*pflag.Flag) {
	heads := make([]string, len(flags))
	width := 0
	for i, f := range flags {
		h := "      --" + f.Name
		if f.Shorthand != "" {
			h = "  -" + f.Shorthand + ", --" + f.Name
		}
		if arg := flagArg(f); arg != "" {
			h += " " + arg
		}
		heads[i] = h
		width = max(width, len(h))
	}
	for i, f := range flags {
		usage := strings.TrimPrefix(f.Usage, "ext4: ")
		if _, u := pflag.UnquoteUsage(f); strings.Contains(f.Usage, "`") {
			usage = strings.TrimPrefix(u, "ext4: ")
		}
		if d := f.DefValue; d != "" && d != "0" && d != "false" && d != "[]" && !strings.Contains(usage, "default") {
			usage += " (default " + d + ")"
		}
		fmt.Fprintf(b, "%-*s   %s\n", width, heads[i], wrap(usage, helpWidth-width-3, width+3))
	}
}

// helpWidth is the width the flag descriptions are wrapped to.
const helpWidth = 100

// wrap breaks s into lines of at most width columns (a longer word stays whole), each line
// after the first indented by indent spaces.
func wrap(s string, width, indent int) string {
	width = max(width, 30)
	var b strings.Builder
	n := 0
	for i, w := range strings.Fields(s) {
		switch {
		case i == 0:
		case n+1+len(w) > width:
			b.WriteString("\n" + strings.Repeat(" ", indent))
			n = 0
		default:
			b.WriteByte(' ')
			n++
		}
		b.WriteString(w)
		n += len(w)
	}
	return b.String()
}

// flagArg names a flag's argument: the back-quoted word of its usage, or one made from its
// type; none for a boolean.
func flagArg(f *pflag.Flag) string {
	if f.Value.Type() == "bool" {
		return ""
	}
	if strings.Contains(f.Usage, "`") {
		name, _ := pflag.UnquoteUsage(f)
		return name
	}
	switch t := f.Value.Type(); t {
	case "string", "stringArray", "stringSlice":
		return strings.ToUpper(f.Name)
	case "int", "int32", "int64", "uint", "uint32", "uint64", "count":
		return "N"
	case "duration":
		return "DURATION"
	default:
		return strings.ToUpper(t)
	}
}

// version is set at build time with -ldflags "-X main.version=…"; otherwise the module
// version from the build info is used.
var version = ""

// versionText is what --version prints: the version, the commit it was built from (and
// whether the tree had changes), and the Go version, as far as the build recorded them.
func versionText() string {
	v, commit, when, modified := version, "", "", false
	bi, ok := debug.ReadBuildInfo()
	if ok {
		if v == "" {
			v = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				commit = s.Value
			case "vcs.time":
				when = s.Value
			case "vcs.modified":
				modified = s.Value == "true"
			}
		}
	}
	if (v == "" || v == "(devel)") && commit == "" {
		// Built without a version or VCS stamps (-buildvcs=false, a git worktree): the
		// executable's own digest still tells one build from another.
		v = "devel"
		if sum := executableDigest(); sum != "" {
			v += ", executable sha256:" + sum
		}
	} else if v == "" {
		v = "(devel)"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "img2ext4 %s\n", v)
	if commit != "" {
		fmt.Fprintf(&b, "commit:  %s", commit)
		if when != "" {
			fmt.Fprintf(&b, " (%s)", when)
		}
		if modified {
			b.WriteString(", with uncommitted changes")
		}
		b.WriteString("\n")
	}
	goVersion := runtime.Version()
	if ok && bi.GoVersion != "" {
		goVersion = bi.GoVersion
	}
	fmt.Fprintf(&b, "go:      %s %s/%s\n", goVersion, runtime.GOOS, runtime.GOARCH)
	return b.String()
}

// executableDigest returns the first 16 hex digits of the running executable's SHA-256,
// or "" when it cannot be read.
func executableDigest() string {
	exe, err := os.Executable()
	if err != nil {
		return ""
	}
	f, err := os.Open(exe)
	if err != nil {
		return ""
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return ""
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}
