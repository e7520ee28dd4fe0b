package trusttest

import (
	"bytes"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"testing"
	"time"

	keystore "github.com/pavlo-v-chernykh/keystore-go/v4"

	"github.com/img2ext4/img2ext4/internal/tartest"
)

// Need skips the test unless every named program is on PATH. Call it before any work.
func Need(t testing.TB, progs ...string) {
	t.Helper()
	for _, p := range progs {
		if _, err := exec.LookPath(p); err != nil {
			t.Skipf("%s not found on PATH (Debian: apt-get install openssl default-jre-headless)", p)
		}
	}
}

// Layout is a test image: its entries and the trust stores a test checks after the CA
// went in.
type Layout struct {
	Name    string
	Entries []tartest.Entry
	// Bundles are PEM bundles (paths inside the image) that must verify the leaf.
	Bundles []string
	// CADirs are OpenSSL CA directories that must verify the leaf.
	CADirs []string
	// Keystores are Java keystores that must list the CA, with their passwords.
	Keystores map[string]string
	// Anchors are anchor directories that must hold the CA.
	Anchors []string
}

// Mtime is the time of the files of the layouts; edited files must keep it.
var Mtime = time.Date(2023, 5, 6, 7, 8, 9, 0, time.UTC)

// OpenSSLHash returns `openssl x509 -hash -noout` of the PEM certificate.
func OpenSSLHash(t testing.TB, certPEM []byte) string {
	t.Helper()
	cmd := exec.Command("openssl", "x509", "-hash", "-noout")
	cmd.Stdin = bytes.NewReader(certPEM)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("openssl x509 -hash: %v", err)
	}
	return strings.TrimSpace(string(out))
}

// trusted returns ca as a "TRUSTED CERTIFICATE" trusted for serverAuth, as
// `openssl x509 -addtrust serverAuth -setalias` writes it (the shape of Fedora's
// ca-bundle.trust.crt entries).
func trusted(t testing.TB, ca *CA) []byte {
	t.Helper()
	cmd := exec.Command("openssl", "x509", "-addtrust", "serverAuth", "-setalias", ca.Cert.Subject.CommonName)
	cmd.Stdin = bytes.NewReader(ca.PEM)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("openssl x509 -addtrust: %v", err)
	}
	return out
}

// JKS returns a JKS keystore (password "changeit") holding the CAs, aliases like Debian's.
func JKS(t testing.TB, cas ...*CA) []byte {
	t.Helper()
	ks := keystore.New(keystore.WithOrderedAliases())
	for _, ca := range cas {
		alias := "debian:" + strings.ToLower(strings.ReplaceAll(ca.Cert.Subject.CommonName, " ", "_")) + ".pem"
		err := ks.SetTrustedCertificateEntry(alias, keystore.TrustedCertificateEntry{
			CreationTime: Mtime,
			Certificate:  keystore.Certificate{Type: "X.509", Content: ca.Cert.Raw},
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	var buf bytes.Buffer
	if err := ks.Store(&buf, []byte("changeit")); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// KeytoolPKCS12 returns a PKCS#12 trust store made by keytool holding ca. With password
// "" it is password-less, like the JDK's own cacerts since JDK 18.
func KeytoolPKCS12(t testing.TB, password string, ca *CA) []byte {
	t.Helper()
	dir := t.TempDir()
	caFile := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caFile, ca.PEM, 0o644); err != nil {
		t.Fatal(err)
	}
	store := filepath.Join(dir, "cacerts")
	args := []string{"-importcert", "-noprompt", "-storetype", "PKCS12", "-keystore", store, "-alias", "distro-a", "-file", caFile}
	if password == "" {
		args = append([]string{"-J-Dkeystore.pkcs12.certProtectionAlgorithm=NONE", "-J-Dkeystore.pkcs12.macAlgorithm=NONE"}, args...)
		args = append(args, "-storepass", "changeit")
	} else {
		args = append(args, "-storepass", password)
	}
	if out, err := exec.Command("keytool", args...).CombinedOutput(); err != nil {
		t.Fatalf("keytool %v: %v\n%s", args, err, out)
	}
	b, err := os.ReadFile(store)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

type builder struct {
	entries []tartest.Entry
	dirs    map[string]bool
}

func (b *builder) mkdir(p string) {
	if p == "." || p == "/" || p == "" || b.dirs[p] {
		return
	}
	b.mkdir(path.Dir(p))
	b.dirs[p] = true
	b.entries = append(b.entries, tartest.Dir(p, tartest.Mtime(Mtime)))
}

func (b *builder) file(p string, data []byte, opts ...tartest.Opt) {
	b.mkdir(path.Dir(p))
	b.entries = append(b.entries, tartest.File(p, string(data), append([]tartest.Opt{tartest.Mtime(Mtime)}, opts...)...))
}

func (b *builder) link(p, target string) {
	b.mkdir(path.Dir(p))
	b.entries = append(b.entries, tartest.Symlink(p, target, tartest.Mtime(Mtime)))
}

func newBuilder() *builder { return &builder{dirs: map[string]bool{}} }

func fileName(ca *CA) string { return strings.ReplaceAll(ca.Cert.Subject.CommonName, " ", "_") }

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

// debianBase writes Debian's arrangement: per-CA links into /usr/share/ca-certificates
// (absolute), hash links made by `openssl x509 -hash`, the bundle, an empty anchor
// directory and a JKS cacerts.
func debianBase(t testing.TB, p *PKI, b *builder) {
	b.mkdir("usr/local/share/ca-certificates")
	for _, ca := range []*CA{p.DistroA, p.DistroB} {
		n := fileName(ca)
		b.file("usr/share/ca-certificates/mozilla/"+n+".crt", ca.PEM)
		b.link("etc/ssl/certs/"+n+".pem", "/usr/share/ca-certificates/mozilla/"+n+".crt")
		b.link("etc/ssl/certs/"+OpenSSLHash(t, ca.PEM)+".0", n+".pem")
	}
	b.file("etc/ssl/certs/ca-certificates.crt", cat(p.DistroA.PEM, p.DistroB.PEM), tartest.Mode(0o644), tartest.Owner(0, 0))
	b.file("etc/ssl/certs/java/cacerts", JKS(t, p.DistroA, p.DistroB))
}

// Debian is a Debian/Ubuntu image with python3-certifi (cacert.pem an absolute link to the
// bundle) and ca-certificates-java.
func Debian(t testing.TB, p *PKI) Layout {
	b := newBuilder()
	debianBase(t, p, b)
	b.link("usr/lib/python3/dist-packages/certifi/cacert.pem", "/etc/ssl/certs/ca-certificates.crt")
	return Layout{
		Name:      "debian",
		Entries:   b.entries,
		Bundles:   []string{"/etc/ssl/certs/ca-certificates.crt", "/usr/lib/python3/dist-packages/certifi/cacert.pem"},
		CADirs:    []string{"/etc/ssl/certs"},
		Keystores: map[string]string{"/etc/ssl/certs/java/cacerts": "changeit"},
		Anchors:   []string{"/usr/local/share/ca-certificates"},
	}
}

// Alpine is an Alpine image with ca-certificates-bundle: the bundle, /etc/ssl/cert.pem
// linking to it, and the OpenSSL 1.1 compatibility links (absolute).
func Alpine(t testing.TB, p *PKI) Layout {
	b := newBuilder()
	b.file("etc/ssl/certs/ca-certificates.crt", cat(p.DistroA.PEM, p.DistroB.PEM))
	b.link("etc/ssl/cert.pem", "certs/ca-certificates.crt")
	b.link("etc/ssl1.1/cert.pem", "/etc/ssl/cert.pem")
	b.link("etc/ssl1.1/certs", "/etc/ssl/certs")
	return Layout{
		Name:    "alpine",
		Entries: b.entries,
		Bundles: []string{"/etc/ssl/certs/ca-certificates.crt", "/etc/ssl/cert.pem", "/etc/ssl1.1/cert.pem"},
		CADirs:  []string{"/etc/ssl/certs", "/etc/ssl1.1/certs"},
	}
}

// Fedora is a Fedora/RHEL image: extracted bundles from update-ca-trust (with a
// directory-hash CA directory and a TRUSTED CERTIFICATE bundle), the /etc/pki/tls links
// (relative and absolute), /etc/ssl/certs -> /etc/pki/tls/certs, anchors and a JKS cacerts.
func Fedora(t testing.TB, p *PKI) Layout {
	b := newBuilder()
	var bundle, trust []byte
	for _, ca := range []*CA{p.DistroA, p.DistroB} {
		bundle = cat(bundle, []byte("# "+ca.Cert.Subject.CommonName+"\n"), ca.PEM)
		trust = cat(trust, []byte("# "+ca.Cert.Subject.CommonName+"\n"), trusted(t, ca))
		b.file("etc/pki/ca-trust/extracted/pem/directory-hash/"+fileName(ca)+".pem", ca.PEM)
		b.link("etc/pki/ca-trust/extracted/pem/directory-hash/"+OpenSSLHash(t, ca.PEM)+".0", fileName(ca)+".pem")
	}
	b.file("etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem", bundle, tartest.Mode(0o444))
	b.file("etc/pki/ca-trust/extracted/openssl/ca-bundle.trust.crt", trust, tartest.Mode(0o444))
	b.file("etc/pki/ca-trust/extracted/java/cacerts", JKS(t, p.DistroA, p.DistroB), tartest.Mode(0o444))
	b.mkdir("etc/pki/ca-trust/source/anchors")
	b.link("etc/pki/tls/certs/ca-bundle.crt", "../../ca-trust/extracted/pem/tls-ca-bundle.pem")
	b.link("etc/pki/tls/certs/ca-bundle.trust.crt", "/etc/pki/ca-trust/extracted/openssl/ca-bundle.trust.crt")
	b.link("etc/pki/tls/cert.pem", "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem")
	b.link("etc/pki/java/cacerts", "/etc/pki/ca-trust/extracted/java/cacerts")
	b.link("etc/ssl/certs", "/etc/pki/tls/certs")
	return Layout{
		Name:    "fedora",
		Entries: b.entries,
		Bundles: []string{
			"/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem", "/etc/pki/tls/certs/ca-bundle.crt",
			"/etc/pki/tls/cert.pem", "/etc/pki/ca-trust/extracted/openssl/ca-bundle.trust.crt",
			"/etc/pki/tls/certs/ca-bundle.trust.crt",
		},
		CADirs:    []string{"/etc/ssl/certs", "/etc/pki/ca-trust/extracted/pem/directory-hash"},
		Keystores: map[string]string{"/etc/pki/java/cacerts": "changeit"},
		Anchors:   []string{"/etc/pki/ca-trust/source/anchors"},
	}
}

// OpenSUSE is an openSUSE/SLES image: the bundle in /var/lib/ca-certificates with
// /etc/ssl/ca-bundle.pem linking to it, /etc/ssl/certs -> /var/lib/ca-certificates/pem
// (absolute), anchors and a JKS java-cacerts.
func OpenSUSE(t testing.TB, p *PKI) Layout {
	b := newBuilder()
	for _, ca := range []*CA{p.DistroA, p.DistroB} {
		b.file("var/lib/ca-certificates/pem/"+fileName(ca)+".pem", ca.PEM)
		b.link("var/lib/ca-certificates/pem/"+OpenSSLHash(t, ca.PEM)+".0", fileName(ca)+".pem")
	}
	b.file("var/lib/ca-certificates/ca-bundle.pem", cat(p.DistroA.PEM, p.DistroB.PEM))
	b.file("var/lib/ca-certificates/java-cacerts", JKS(t, p.DistroA, p.DistroB))
	b.mkdir("etc/pki/trust/anchors")
	b.link("etc/ssl/ca-bundle.pem", "/var/lib/ca-certificates/ca-bundle.pem")
	b.link("etc/ssl/certs", "/var/lib/ca-certificates/pem")
	return Layout{
		Name:      "opensuse",
		Entries:   b.entries,
		Bundles:   []string{"/var/lib/ca-certificates/ca-bundle.pem", "/etc/ssl/ca-bundle.pem"},
		CADirs:    []string{"/etc/ssl/certs"},
		Keystores: map[string]string{"/var/lib/ca-certificates/java-cacerts": "changeit"},
		Anchors:   []string{"/etc/pki/trust/anchors"},
	}
}

// Certifi is a Debian image with pip-installed certifi (a real cacert.pem in a virtual
// environment and pip's vendored copy).
func Certifi(t testing.TB, p *PKI) Layout {
	l := Debian(t, p)
	b := newBuilder()
	b.entries = l.Entries
	for _, e := range l.Entries {
		if e.Hdr.Typeflag == '5' {
			b.dirs[strings.TrimSuffix(e.Hdr.Name, "/")] = true
		}
	}
	venv := "opt/app/.venv/lib/python3.12/site-packages/"
	b.file(venv+"certifi/cacert.pem", cat([]byte("\n# Issuer: CN=Distro Root A\n"), p.DistroA.PEM, p.DistroB.PEM), tartest.Mode(0o664), tartest.Owner(1000, 1000))
	b.file(venv+"pip/_vendor/certifi/cacert.pem", cat(p.DistroA.PEM, p.DistroB.PEM))
	l.Name, l.Entries = "certifi", b.entries
	l.Bundles = append(l.Bundles, "/"+venv+"certifi/cacert.pem", "/"+venv+"pip/_vendor/certifi/cacert.pem")
	return l
}

// Java is a Debian trixie-style image whose cacerts is PKCS#12 made by keytool (password
// changeit), with a JDK whose own cacerts is a password-less PKCS#12 (JDK 18+).
func Java(t testing.TB, p *PKI) Layout {
	b := newBuilder()
	b.file("etc/ssl/certs/ca-certificates.crt", cat(p.DistroA.PEM, p.DistroB.PEM))
	b.file("etc/ssl/certs/java/cacerts", KeytoolPKCS12(t, "changeit", p.DistroA))
	b.file("opt/java/openjdk/lib/security/cacerts", KeytoolPKCS12(t, "", p.DistroA))
	b.link("usr/lib/jvm/java-21-openjdk-amd64/lib/security/cacerts", "/etc/ssl/certs/java/cacerts")
	return Layout{
		Name:      "java",
		Entries:   b.entries,
		Bundles:   []string{"/etc/ssl/certs/ca-certificates.crt"},
		CADirs:    []string{"/etc/ssl/certs"},
		Keystores: map[string]string{"/etc/ssl/certs/java/cacerts": "changeit", "/opt/java/openjdk/lib/security/cacerts": ""},
	}
}

// Empty is an image with no trust store at all (busybox-like).
func Empty(t testing.TB, p *PKI) Layout {
	b := newBuilder()
	b.mkdir("etc")
	b.file("etc/hostname", []byte("box\n"))
	return Layout{
		Name:    "empty",
		Entries: b.entries,
		Bundles: []string{"/etc/ssl/certs/ca-certificates.crt"},
		CADirs:  []string{"/etc/ssl/certs"},
	}
}

// All returns every layout.
func All(t testing.TB, p *PKI) []Layout {
	return []Layout{Debian(t, p), Alpine(t, p), Fedora(t, p), OpenSUSE(t, p), Certifi(t, p), Java(t, p), Empty(t, p)}
}
