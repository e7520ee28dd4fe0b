package trusttest

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// Resolve returns the host path of name inside the image root on the host, following
// symbolic links with chroot semantics (absolute targets start again at root, ".." stops
// at root); follow says whether a final link is followed too.
func Resolve(root, name string, follow bool) (string, error) {
	parts := strings.Split(strings.Trim(path.Clean("/"+name), "/"), "/")
	cur := ""
	links := 0
	for len(parts) > 0 {
		p := parts[0]
		parts = parts[1:]
		switch p {
		case "", ".":
			continue
		case "..":
			cur = strings.TrimPrefix(path.Dir("/"+cur), "/")
			continue
		}
		next := path.Join(cur, p)
		info, err := os.Lstat(filepath.Join(root, next))
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && len(parts) == 0 {
				return filepath.Join(root, next), err
			}
			return "", err
		}
		if info.Mode()&fs.ModeSymlink != 0 && (len(parts) > 0 || follow) {
			if links++; links > 40 {
				return "", errors.New("trusttest: too many levels of symbolic links")
			}
			target, err := os.Readlink(filepath.Join(root, next))
			if err != nil {
				return "", err
			}
			if strings.HasPrefix(target, "/") {
				cur = ""
			}
			parts = append(strings.Split(target, "/"), parts...)
			continue
		}
		cur = next
	}
	return filepath.Join(root, cur), nil
}

func mustResolve(t testing.TB, root, name string) string {
	t.Helper()
	p, err := Resolve(root, name, true)
	if err != nil {
		t.Fatalf("resolve %s in the image: %v", name, err)
	}
	return p
}

func verify(t testing.TB, what string, args ...string) {
	t.Helper()
	out, err := exec.Command("openssl", append([]string{"verify"}, args...)...).CombinedOutput()
	if err != nil || !strings.Contains(string(out), ": OK") {
		t.Errorf("openssl verify %s: %v\n%s", what, err, out)
	}
}

// CheckBundle runs `openssl verify -CAfile <bundle> <leaf>` on the bundle name of the image
// extracted at root (with and without -purpose sslserver).
func CheckBundle(t testing.TB, root, name, leafFile string) {
	t.Helper()
	p := mustResolve(t, root, name)
	verify(t, "-CAfile "+name, "-CAfile", p, leafFile)
	verify(t, "-purpose sslserver -CAfile "+name, "-purpose", "sslserver", "-CAfile", p, leafFile)
}

var hashLink = regexp.MustCompile(`^[0-9a-fA-F]{8}\.r?[0-9]+$`)

// links lists the hash links of the host directory dir: name → target.
func links(t testing.TB, dir string) map[string]string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, e := range ents {
		if e.Type()&fs.ModeSymlink != 0 && hashLink.MatchString(e.Name()) {
			target, err := os.Readlink(filepath.Join(dir, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			m[e.Name()] = target
		}
	}
	return m
}

// CheckCADir copies the CA directory dir of the image at root to the host (certificate
// files read through their links inside the image, hash links kept as links), runs
// `openssl verify -CApath` on the copy for each leaf, and checks that `openssl rehash` on
// the copy finds nothing to change: the image's hash links are the ones rehash makes.
func CheckCADir(t testing.TB, root, dir string, leafFiles ...string) {
	t.Helper()
	src := mustResolve(t, root, dir)
	cp := t.TempDir()
	ents, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		in := path.Join(dir, e.Name())
		if e.Type()&fs.ModeSymlink != 0 && hashLink.MatchString(e.Name()) {
			target, err := os.Readlink(filepath.Join(src, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(target, filepath.Join(cp, e.Name())); err != nil {
				t.Fatal(err)
			}
			continue
		}
		p, err := Resolve(root, in, true)
		if err != nil {
			continue // dangling in the image too
		}
		info, err := os.Stat(p)
		if err != nil || !info.Mode().IsRegular() {
			continue
		}
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(cp, e.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	before := links(t, cp)
	for _, leaf := range leafFiles {
		verify(t, "-CApath "+dir+" "+filepath.Base(leaf), "-CApath", cp, leaf)
	}
	if out, err := exec.Command("openssl", "rehash", cp).CombinedOutput(); err != nil {
		t.Fatalf("openssl rehash: %v\n%s", err, out)
	}
	after := links(t, cp)
	if !equalMaps(before, after) {
		t.Errorf("hash links of %s differ from what openssl rehash makes:\nimage:  %v\nrehash: %v", dir, before, after)
	}
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// CheckKeystore runs `keytool -list` on the Java keystore name of the image at root and
// checks that it lists certificates with the SHA-256 fingerprints fps. An empty password
// is for password-less PKCS#12 stores.
func CheckKeystore(t testing.TB, root, name, password string, fps ...string) {
	t.Helper()
	p := mustResolve(t, root, name)
	pw := password
	if pw == "" {
		pw = "changeit" // keytool wants one; a password-less store ignores it
	}
	out, err := exec.Command("keytool", "-list", "-keystore", p, "-storepass", pw).CombinedOutput()
	if err != nil {
		t.Errorf("keytool -list %s: %v\n%s", name, err, out)
		return
	}
	for _, fp := range fps {
		if !strings.Contains(string(out), fp) {
			t.Errorf("keytool -list %s does not list the CA %s:\n%s", name, fp, out)
		}
	}
}

// CheckAnchor checks that the anchor directory dir of the image at root holds a file with
// the PEM certificate der.
func CheckAnchor(t testing.TB, root, dir string, certPEM []byte) {
	t.Helper()
	src := mustResolve(t, root, dir)
	ents, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err == nil && string(b) == string(certPEM) {
			return
		}
	}
	t.Errorf("anchor directory %s does not hold the CA", dir)
}

// CheckLayout runs the host's openssl and keytool on every store of the layout l in the
// image extracted at root: each bundle and CA directory verifies p's leaves, each keystore
// lists p's two CAs, each anchor directory holds p's corporate CA.
func CheckLayout(t testing.TB, root string, l Layout, p *PKI) {
	t.Helper()
	for _, b := range l.Bundles {
		CheckBundle(t, root, b, p.LeafFile)
		CheckBundle(t, root, b, p.TwinLeafFile)
	}
	for _, d := range l.CADirs {
		CheckCADir(t, root, d, p.LeafFile, p.TwinLeafFile)
	}
	for ks, pw := range l.Keystores {
		CheckKeystore(t, root, ks, pw, p.Corp.Fingerprint(), p.Twin.Fingerprint())
	}
	for _, a := range l.Anchors {
		CheckAnchor(t, root, a, p.Corp.PEM)
	}
}

// HostStores hashes the host's own trust stores (every file and link below the usual
// directories), so a test can show they were not touched.
func HostStores(t testing.TB) string {
	t.Helper()
	var lines []string
	for _, top := range []string{"/etc/ssl", "/etc/pki", "/usr/local/share/ca-certificates", "/etc/ca-certificates", "/var/lib/ca-certificates", "/usr/share/ca-certificates"} {
		filepath.WalkDir(top, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return nil
			}
			info, err := d.Info()
			if err != nil {
				return nil
			}
			line := p + " " + info.Mode().String() + " " + info.ModTime().String()
			switch {
			case d.Type()&fs.ModeSymlink != 0:
				target, _ := os.Readlink(p)
				line += " -> " + target
			case d.Type().IsRegular():
				b, _ := os.ReadFile(p)
				sum := sha256.Sum256(b)
				line += " " + hex.EncodeToString(sum[:])
			}
			lines = append(lines, line)
			return nil
		})
	}
	sort.Strings(lines)
	sum := sha256.Sum256([]byte(strings.Join(lines, "\n")))
	return hex.EncodeToString(sum[:])
}
