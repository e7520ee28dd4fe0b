package ocifetch

import (
	"regexp"
	"strings"
	"testing"
)

// The distribution reference grammar (distribution/reference's regexp.go, written out
// again here as an oracle independent of go-containerregistry's parser), with digests
// narrowed to sha256, the only algorithm this package verifies.
var (
	refAlnum      = `[a-z0-9]+`
	refSeparator  = `(?:[._]|__|[-]+)`
	refComponent  = refAlnum + `(?:` + refSeparator + refAlnum + `)*`
	refDomainPart = `(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])`
	refHost       = `(?:` + refDomainPart + `(?:\.` + refDomainPart + `)*|\[[a-fA-F0-9:]+\])`
	refDomain     = refHost + `(?::[0-9]+)?`
	refTag        = `[\w][\w.-]{0,127}`
	refDigest     = `sha256:[0-9a-f]{64}`

	domainRE   = regexp.MustCompile(`^` + refDomain + `$`)
	remoteRE   = regexp.MustCompile(`^` + refComponent + `(?:/` + refComponent + `)*$`)
	tagRE      = regexp.MustCompile(`^` + refTag + `$`)
	digestRE   = regexp.MustCompile(`^` + refDigest + `$`)
	ipv6HostRE = regexp.MustCompile(`^\[[a-fA-F0-9:]+\]`)
)

// grammarOK reports whether s is a registry reference by the distribution grammar,
// splitting the domain off as docker does: the first component is a domain when it holds
// a dot or a colon or is "localhost".
func grammarOK(s string) bool {
	name, digest, hasDigest := strings.Cut(s, "@")
	if hasDigest && !digestRE.MatchString(digest) {
		return false
	}
	if i := strings.LastIndex(name, ":"); i > strings.LastIndex(name, "/") {
		if !tagRE.MatchString(name[i+1:]) {
			return false
		}
		name = name[:i]
	}
	remote := name
	if first, rest, ok := strings.Cut(name, "/"); ok && (strings.ContainsAny(first, ".:") || first == "localhost") {
		if !domainRE.MatchString(first) || ipv6HostRE.MatchString(first) {
			return false // bracketed IPv6 hosts are left out: RFC 3986 parsing of them differs
		}
		remote = rest
	}
	return len(remote) <= 255 && remoteRE.MatchString(remote)
}

// FuzzReferenceGrammar checks reference parsing against the distribution grammar: every
// string the grammar accepts (other than a skopeo transport this package refuses) parses;
// every registry reference that parses has a canonical name within the grammar; and every
// reference that parses prints as a string that parses back to itself.
func FuzzReferenceGrammar(f *testing.F) {
	for _, s := range []string{
		"alpine", "alpine:3.20", "docker.io/library/alpine:3.20", "localhost/a", "localhost:5000/a/b:c",
		"host.example:5000/repo@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
		"a/b:t@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
		"docker://quay.io/a/b", "http://127.0.0.1:5000/r:t", "oci:/x:tag", "oci-archive:a.tar:1",
		"docker-archive:s.tar:@0", "a__b/c--d/e.f", "A/b", "a..b", "-a", "a:", ":", "",
		// Found by this target: repositories, tags and registries go-containerregistry lets through.
		"docker://.", "docker://a/../b", "0:.", "a:-x", ":/0", "[::1]:5000/a", "[zz]/a",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := parseReference(s)
		if err != nil {
			if grammarOK(s) && !refusedTransport(s) {
				t.Fatalf("%q matches the reference grammar but is refused: %v", s, err)
			}
			return
		}
		canon := r.String()
		if r.transport == transportRegistry {
			canon = r.ref.Name() // registry/repository:tag or @digest, every default spelled out
			if !grammarOK(canon) && !ipv6HostRE.MatchString(canon) {
				t.Fatalf("%q parsed as %q, outside the reference grammar", s, canon)
			}
		}
		again, err := parseReference(canon)
		if err != nil {
			t.Fatalf("%q parsed as %q, which does not parse: %v", s, canon, err)
		}
		got := again.String()
		if again.transport == transportRegistry {
			got = again.ref.Name()
		}
		if got != canon || again.transport != r.transport {
			t.Fatalf("%q parsed as %s %q, which parses as %s %q", s, r.transport, canon, again.transport, got)
		}
	})
}

// refusedTransport reports whether s starts with a skopeo transport this package refuses
// on purpose ("dir:x" is also the repository "dir" with tag "x"), or with "docker-daemon:",
// whose image it checks by rules of its own.
func refusedTransport(s string) bool {
	prefix, _, ok := strings.Cut(s, ":")
	if !ok {
		return false
	}
	for _, u := range append(unsupportedTransports, "docker-daemon") {
		if prefix == u {
			return true
		}
	}
	return false
}
