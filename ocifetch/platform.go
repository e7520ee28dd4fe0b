package ocifetch

import (
	"strconv"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// platformString formats p as os/arch[/variant][:osversion].
func platformString(p v1.Platform) string {
	s := p.OS + "/" + p.Architecture
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	if p.OSVersion != "" {
		s += ":" + p.OSVersion
	}
	return s
}

// normalizePlatform lower-cases p and maps architecture aliases and default
// variants the way containerd does.
func normalizePlatform(p v1.Platform) v1.Platform {
	p.OS = strings.ToLower(p.OS)
	p.Architecture = strings.ToLower(p.Architecture)
	p.Variant = strings.ToLower(p.Variant)
	switch p.Architecture {
	case "x86_64", "x86-64":
		p.Architecture = "amd64"
	case "aarch64":
		p.Architecture = "arm64"
	case "armhf":
		p.Architecture, p.Variant = "arm", "v7"
	case "armel":
		p.Architecture, p.Variant = "arm", "v6"
	case "i386", "i686":
		p.Architecture = "386"
	}
	switch p.Architecture {
	case "arm64":
		if p.Variant == "" || p.Variant == "8" {
			p.Variant = "v8"
		}
	case "arm":
		switch p.Variant {
		case "":
			p.Variant = "v7"
		case "5", "6", "7", "8":
			p.Variant = "v" + p.Variant
		}
	case "amd64":
		if p.Variant == "" {
			p.Variant = "v1"
		}
	}
	return p
}

// variantLevel returns N for a variant "vN" or "vN.M", or -1.
func variantLevel(v string) float64 {
	f, err := strconv.ParseFloat(strings.TrimPrefix(v, "v"), 64)
	if !strings.HasPrefix(v, "v") || err != nil {
		return -1
	}
	return f
}

// platformScore rates how well have serves want: -1 for not at all, higher
// for better. An exact variant beats an older compatible one (arm/v6 for
// arm/v7, amd64/v2 for amd64/v3); an empty wanted variant accepts any.
func platformScore(want, have v1.Platform) float64 {
	w, h := normalizePlatform(want), normalizePlatform(have)
	if w.OS != h.OS || w.Architecture != h.Architecture {
		return -1
	}
	if want.OSVersion != "" && want.OSVersion != have.OSVersion {
		return -1
	}
	if want.Variant == "" {
		// Any variant will do; prefer the default one.
		if h.Variant == normalizePlatform(v1.Platform{OS: w.OS, Architecture: w.Architecture}).Variant {
			return 1000
		}
		return 500
	}
	if w.Variant == h.Variant {
		return 1000
	}
	wl, hl := variantLevel(w.Variant), variantLevel(h.Variant)
	if wl >= 0 && hl >= 0 && hl < wl {
		return hl
	}
	return -1
}

// isAttestation reports whether p is the unknown/unknown platform that
// BuildKit gives to attestation manifests.
func isAttestation(p *v1.Platform) bool {
	return p != nil && p.OS == "unknown" && p.Architecture == "unknown"
}
