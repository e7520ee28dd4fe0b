package ocifetch

import (
	"fmt"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
)

// checkReferenceName refuses what go-containerregistry's name package accepts beyond the
// distribution grammar: see [checkRepositoryPath], and tags that start with '.' or '-'.
func checkReferenceName(ref name.Reference) error {
	if reg := ref.Context().RegistryStr(); !validRegistry(reg) {
		return fmt.Errorf("registry %q is not a host name or [IPv6 address] with an optional :port", reg)
	}
	if err := checkRepositoryPath(ref.Context().RepositoryStr()); err != nil {
		return err
	}
	if t, ok := ref.(name.Tag); ok {
		if s := t.TagStr(); s != "" && (s[0] == '.' || s[0] == '-') {
			return fmt.Errorf("tag %q starts with %q", s, s[0])
		}
	}
	return nil
}

// checkRepositoryPath refuses a repository that is not a path of components as the
// distribution specification defines them: lowercase letters and digits, separated inside
// a component by one ".", one or two "_", or any number of "-". go-containerregistry's
// name package accepts any mix of those characters ("..", "-a", "a//b"), which registries
// refuse and which would put relative paths into URLs.
func checkRepositoryPath(repo string) error {
	for _, c := range strings.Split(repo, "/") {
		if !validComponent(c) {
			return fmt.Errorf("repository %q: component %q is not lowercase letters and digits joined by '.', '_', '__' or dashes", repo, c)
		}
	}
	return nil
}

func validComponent(c string) bool {
	alnum := func(b byte) bool { return b >= 'a' && b <= 'z' || b >= '0' && b <= '9' }
	if c == "" || !alnum(c[0]) || !alnum(c[len(c)-1]) {
		return false
	}
	for i := 0; i < len(c); {
		if alnum(c[i]) {
			i++
			continue
		}
		// A separator run, between two alphanumerics (the ends are checked above).
		j := i
		for j < len(c) && !alnum(c[j]) {
			j++
		}
		switch sep := c[i:j]; {
		case sep == "." || sep == "_" || sep == "__":
		case strings.Trim(sep, "-") == "":
		default:
			return false
		}
		i = j
	}
	return true
}

// validRegistry reports whether reg is HOST[:PORT], HOST being DNS labels (letters,
// digits and inner dashes, joined by dots) or a bracketed IPv6 address.
func validRegistry(reg string) bool {
	host, port := reg, ""
	if strings.HasPrefix(reg, "[") {
		i := strings.IndexByte(reg, ']')
		if i < 0 || strings.Trim(reg[1:i], "0123456789abcdefABCDEF:") != "" || i == 1 {
			return false
		}
		host, port = "", reg[i+1:]
	} else if i := strings.IndexByte(reg, ':'); i >= 0 {
		host, port = reg[:i], reg[i:]
	}
	if port != "" && (len(port) < 2 || port[0] != ':' || strings.Trim(port[1:], "0123456789") != "") {
		return false
	}
	if strings.HasPrefix(reg, "[") {
		return true
	}
	alnum := func(b byte) bool { return b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' }
	for _, l := range strings.Split(host, ".") {
		if l == "" || !alnum(l[0]) || !alnum(l[len(l)-1]) || strings.Trim(l, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-") != "" {
			return false
		}
	}
	return true
}
