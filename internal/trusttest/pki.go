// Package trusttest builds test images with the trust-store layouts of real distributions
// (Debian, Alpine, Fedora, openSUSE, Python certifi, Java keystores), the test CAs that go
// into them, and the checks that run the host's openssl and keytool against the result.
// It is for tests only.
package trusttest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// CA is a certificate authority made for a test.
type CA struct {
	Cert *x509.Certificate
	Key  *ecdsa.PrivateKey
	PEM  []byte
}

// PKI holds the CAs a test image starts with and the ones a test installs.
type PKI struct {
	// DistroA and DistroB stand for the distribution's own CAs.
	DistroA, DistroB *CA
	// Corp is the CA the test installs; Leaf is a server certificate it signed, in PEM,
	// and LeafFile that PEM on the host.
	Corp     *CA
	Leaf     []byte
	LeafFile string
	// Twin has the same subject as DistroA (so the same subject hash) and another key: a
	// hash collision in the CA directory.
	Twin *CA
	// TwinLeaf and TwinLeafFile are a server certificate Twin signed.
	TwinLeaf     []byte
	TwinLeafFile string
}

var serial int64

// NewPKI makes fresh CAs and leaves, writing the leaves into a temporary directory.
func NewPKI(t testing.TB) *PKI {
	t.Helper()
	p := &PKI{
		DistroA: NewCA(t, pkix.Name{Country: []string{"US"}, Organization: []string{"Distro Trust"}, CommonName: "Distro Root A"}),
		DistroB: NewCA(t, pkix.Name{Organization: []string{"Distro Trust"}, CommonName: "Distro Root B"}),
		Corp:    NewCA(t, pkix.Name{Organization: []string{"Example Corp"}, OrganizationalUnit: []string{"Egress  Proxy"}, CommonName: "Example Corp Root CA"}),
	}
	p.Twin = NewCA(t, p.DistroA.Cert.Subject)
	dir := t.TempDir()
	p.Leaf = p.Corp.Issue(t, "service.example.com")
	p.LeafFile = filepath.Join(dir, "leaf.pem")
	p.TwinLeaf = p.Twin.Issue(t, "twin.example.com")
	p.TwinLeafFile = filepath.Join(dir, "twin-leaf.pem")
	for f, b := range map[string][]byte{p.LeafFile: p.Leaf, p.TwinLeafFile: p.TwinLeaf} {
		if err := os.WriteFile(f, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

// NewCA makes a self-signed CA with the given subject, valid from a fixed past date for a
// long time.
func NewCA(t testing.TB, subject pkix.Name) *CA {
	t.Helper()
	return newCA(t, &x509.Certificate{
		Subject:               subject,
		NotBefore:             time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC),
		NotAfter:              time.Date(2090, 1, 1, 0, 0, 0, 0, time.UTC),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	})
}

// NewCAFromTemplate makes a self-signed certificate from tmpl (its serial is filled in).
func NewCAFromTemplate(t testing.TB, tmpl *x509.Certificate) *CA {
	t.Helper()
	return newCA(t, tmpl)
}

func newCA(t testing.TB, tmpl *x509.Certificate) *CA {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial++
	tmpl.SerialNumber = big.NewInt(1000 + serial)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &CA{Cert: c, Key: key, PEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// Issue returns a PEM server certificate for host signed by ca.
func (ca *CA) Issue(t testing.TB, host string) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial++
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1000 + serial),
		Subject:      pkix.Name{CommonName: host},
		DNSNames:     []string{host},
		NotBefore:    time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC),
		NotAfter:     time.Date(2090, 1, 1, 0, 0, 0, 0, time.UTC),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// Fingerprint is the SHA-256 fingerprint of the certificate as keytool prints it
// ("AB:CD:...").
func (ca *CA) Fingerprint() string {
	sum := sha256.Sum256(ca.Cert.Raw)
	h := strings.ToUpper(hex.EncodeToString(sum[:]))
	var b strings.Builder
	for i := 0; i < len(h); i += 2 {
		if i > 0 {
			b.WriteByte(':')
		}
		b.WriteString(h[i : i+2])
	}
	return b.String()
}
