package cacert_test

import (
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/img2ext4/img2ext4/cacert"
	"github.com/img2ext4/img2ext4/internal/trusttest"
)

func TestParsePEM(t *testing.T) {
	a := trusttest.NewCA(t, pkix.Name{CommonName: "A"})
	b := trusttest.NewCA(t, pkix.Name{CommonName: "B"})
	leaf := a.Issue(t, "leaf.example")
	noSign := trusttest.NewCAFromTemplate(t, &x509.Certificate{
		Subject: pkix.Name{CommonName: "no certSign"}, NotBefore: time.Unix(0, 0), NotAfter: time.Unix(4e9, 0),
		BasicConstraintsValid: true, IsCA: true, KeyUsage: x509.KeyUsageDigitalSignature,
	})
	trustedA := pem.EncodeToMemory(&pem.Block{Type: "TRUSTED CERTIFICATE", Bytes: append(append([]byte(nil), a.Cert.Raw...), 0x30, 0x00)})
	cases := []struct {
		name  string
		in    string
		n     int
		error error
	}{
		{"one", string(a.PEM), 1, nil},
		{"two with text and a duplicate", "# bundle\n" + string(a.PEM) + "junk\n" + string(b.PEM) + string(a.PEM), 2, nil},
		{"trusted certificate", string(trustedA), 1, nil},
		{"empty", "", 0, cacert.ErrInvalidPEM},
		{"not PEM", "hello\n", 0, cacert.ErrInvalidPEM},
		{"cut short", string(a.PEM[:len(a.PEM)/2]), 0, cacert.ErrInvalidPEM},
		{"damaged base64", strings.Replace(string(a.PEM), "\n", "\n!!", 2), 0, cacert.ErrInvalidPEM},
		{"private key", string(a.PEM) + "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", 0, cacert.ErrInvalidPEM},
		{"garbage DER", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", 0, cacert.ErrInvalidPEM},
		{"leaf", string(leaf), 0, cacert.ErrNotCA},
		{"no certificate signing", string(noSign.PEM), 0, cacert.ErrNotCA},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			certs, err := cacert.ParsePEM([]byte(tc.in))
			if tc.error != nil {
				if !errors.Is(err, tc.error) {
					t.Fatalf("err = %v, want %v", err, tc.error)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(certs) != tc.n {
				t.Errorf("got %d certificates, want %d", len(certs), tc.n)
			}
		})
	}
}

// TestInstallValidity: an expired CA is a warning, and an error under WithStrict; a leaf
// is refused.
func TestInstallValidity(t *testing.T) {
	expired := trusttest.NewCAFromTemplate(t, &x509.Certificate{
		Subject: pkix.Name{CommonName: "Old CA"}, NotBefore: time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC),
		NotAfter: time.Date(2002, 1, 1, 0, 0, 0, 0, time.UTC), BasicConstraintsValid: true, IsCA: true,
	})
	fsys, root := rootFS(t, nil)
	rep, err := cacert.Install(context.Background(), fsys, []*x509.Certificate{expired.Cert})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Warnings) != 1 || !strings.Contains(rep.Warnings[0], "expired on 2002-01-01") {
		t.Errorf("warnings = %q", rep.Warnings)
	}
	if _, err := os.Stat(filepath.Join(root, "etc/ssl/certs/ca-certificates.crt")); err != nil {
		t.Errorf("no bundle written: %v", err)
	}
	fsys, _ = rootFS(t, nil)
	_, err = cacert.Install(context.Background(), fsys, []*x509.Certificate{expired.Cert}, cacert.WithStrict(true))
	if !errors.Is(err, cacert.ErrValidity) {
		t.Errorf("strict: err = %v, want ErrValidity", err)
	}
	leafCA := trusttest.NewCAFromTemplate(t, &x509.Certificate{Subject: pkix.Name{CommonName: "leaf"}, NotBefore: time.Unix(0, 0), NotAfter: time.Unix(4e9, 0)})
	fsys, _ = rootFS(t, nil)
	_, err = cacert.Install(context.Background(), fsys, []*x509.Certificate{leafCA.Cert})
	if !errors.Is(err, cacert.ErrNotCA) {
		t.Errorf("leaf: err = %v, want ErrNotCA", err)
	}
}

// TestInstallJavaPassword: a keystore that the password does not open is skipped with a
// warning, or refused under WithStrict, and left as it was.
func TestInstallJavaPassword(t *testing.T) {
	p := trusttest.NewPKI(t)
	l := trusttest.Debian(t, p)
	fsys, root := rootFS(t, l.Entries)
	ks := filepath.Join(root, "etc/ssl/certs/java/cacerts")
	orig, err := os.ReadFile(ks)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := cacert.Install(context.Background(), fsys, []*x509.Certificate{p.Corp.Cert}, cacert.WithJavaPassword("wrong"))
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Warnings) != 1 || !strings.Contains(rep.Warnings[0], "etc/ssl/certs/java/cacerts") {
		t.Errorf("warnings = %q", rep.Warnings)
	}
	if now, _ := os.ReadFile(ks); string(now) != string(orig) {
		t.Error("keystore changed")
	}
	fsys2, _ := rootFS(t, l.Entries)
	if _, err := cacert.Install(context.Background(), fsys2, []*x509.Certificate{p.Corp.Cert}, cacert.WithJavaPassword("wrong"), cacert.WithStrict(true)); err == nil {
		t.Error("strict: no error")
	}
}

// TestInstallOneIntoEmpty: with one CA the new bundle holds exactly one certificate, so
// openssl rehash links the bundle itself; the CA directory must agree.
func TestInstallOneIntoEmpty(t *testing.T) {
	trusttest.Need(t, "openssl")
	p := trusttest.NewPKI(t)
	fsys, root := rootFS(t, trusttest.Empty(t, p).Entries)
	if _, err := cacert.Install(context.Background(), fsys, []*x509.Certificate{p.Corp.Cert}); err != nil {
		t.Fatal(err)
	}
	trusttest.CheckBundle(t, root, "/etc/ssl/certs/ca-certificates.crt", p.LeafFile)
	trusttest.CheckCADir(t, root, "/etc/ssl/certs", p.LeafFile)
	// A second CA later: the bundle then holds two, and rehash's rules still hold.
	if _, err := cacert.Install(context.Background(), fsys, []*x509.Certificate{p.Twin.Cert}); err != nil {
		t.Fatal(err)
	}
	trusttest.CheckCADir(t, root, "/etc/ssl/certs", p.LeafFile, p.TwinLeafFile)
}

// FuzzParsePEM: any input parses without panicking, and whatever ParsePEM accepts is a
// non-empty list of distinct CA certificates.
func FuzzParsePEM(f *testing.F) {
	a := trusttest.NewCA(f, pkix.Name{CommonName: "A"})
	b := trusttest.NewCA(f, pkix.Name{CommonName: "B"})
	f.Add(a.PEM)
	f.Add(append(append([]byte("# text\n"), a.PEM...), b.PEM...))
	f.Add(a.Issue(f, "leaf"))
	f.Add(a.PEM[:len(a.PEM)/2])
	f.Add([]byte("-----BEGIN TRUSTED CERTIFICATE-----\nMAA=\n-----END TRUSTED CERTIFICATE-----\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		certs, err := cacert.ParsePEM(data)
		if err != nil {
			return
		}
		if len(certs) == 0 {
			t.Fatal("no error and no certificate")
		}
		seen := map[string]bool{}
		for _, c := range certs {
			if cacert.CheckCA(c) != nil || seen[string(c.Raw)] {
				t.Fatalf("accepted %s", c.Subject)
			}
			seen[string(c.Raw)] = true
		}
	})
}
