package cacert_test

import (
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/img2ext4/img2ext4/cacert"
	"github.com/img2ext4/img2ext4/internal/tartest"
	"github.com/img2ext4/img2ext4/internal/trusttest"
)

// dirState lists a host directory: "name -> target" for links, "name" for the rest.
func dirState(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		if e.Type()&os.ModeSymlink != 0 {
			target, _ := os.Readlink(filepath.Join(dir, e.Name()))
			out = append(out, e.Name()+" -> "+target)
		} else {
			out = append(out, e.Name())
		}
	}
	sort.Strings(out)
	return out
}

// TestRehashMatchesOpenSSL runs the package's rehash and `openssl rehash` on copies of
// directories full of cases (duplicates, subject-hash collisions, bundles, keys beside
// certificates, CRLs, wrong and upper-case extensions, stale, dangling and out-of-range
// links, a regular file with a link's name) and wants the same result.
func TestRehashMatchesOpenSSL(t *testing.T) {
	trusttest.Need(t, "openssl")
	p := trusttest.NewPKI(t)
	c := trusttest.NewCA(t, pkix.Name{CommonName: "C"})
	d := trusttest.NewCA(t, pkix.Name{CommonName: "D"})
	e := trusttest.NewCA(t, pkix.Name{CommonName: "E"})
	keyPEM := func(k *ecdsa.PrivateKey, pkcs8 bool) []byte {
		if pkcs8 {
			b, _ := x509.MarshalPKCS8PrivateKey(k)
			return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: b})
		}
		b, _ := x509.MarshalECPrivateKey(k)
		return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: b})
	}
	crlDER, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number: big.NewInt(1), ThisUpdate: time.Unix(1e9, 0), NextUpdate: time.Unix(4e9, 0),
	}, p.Corp.Cert, p.Corp.Key)
	if err != nil {
		t.Fatal(err)
	}
	crl := pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: crlDER})
	hash := func(ca *trusttest.CA) string { return trusttest.OpenSSLHash(t, ca.PEM) }
	cat := func(b ...[]byte) string { return string(bytesJoin(b)) }

	base := map[string]string{
		"a.pem":          string(p.DistroA.PEM),
		"dup-a.pem":      string(p.DistroA.PEM),
		"twin.cer":       string(p.Twin.PEM),
		"b.crt":          string(p.DistroB.PEM),
		"UPPER.PEM":      string(p.Corp.PEM),
		"bundle.crt":     cat(p.DistroA.PEM, p.DistroB.PEM),
		"notes.txt":      string(d.PEM),
		"crl.crl":        string(crl),
		"keycert.pem":    cat(c.PEM, keyPEM(c.Key, false)),
		"keyfirst.pem":   cat(keyPEM(d.Key, true), d.PEM),
		"twokeys.pem":    cat(keyPEM(c.Key, false), keyPEM(d.Key, false), d.PEM),
		"crlcert.pem":    cat(crl, e.PEM),
		"damaged.pem":    "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
		"empty.crt":      "",
		"0badc0de.0":     "not a link\n",
		"z-last-dup.pem": string(p.Twin.PEM),
	}
	cases := []struct {
		name  string
		links map[string]string
	}{
		{"fresh", nil},
		{"existing links", map[string]string{
			hash(p.DistroA) + ".0": "a.pem",
			hash(p.DistroA) + ".5": "twin.cer",
			hash(p.DistroB) + ".0": "gone.pem",
			hash(d) + ".0":         "notes.txt",
			"ffffffff.r0":          "crl.crl",
			"abcdef01.":            "b.crt",
			hash(p.Corp) + ".1":    "UPPER.PEM",
		}},
		{"links in range to the wrong files", map[string]string{
			hash(p.DistroA) + ".0": "twin.cer",
			hash(p.DistroA) + ".1": "bundle.crt",
			hash(p.DistroB) + ".0": "a.pem",
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var entries []tartest.Entry
			for n, content := range base {
				entries = append(entries, tartest.File(n, content))
			}
			for n, target := range tc.links {
				entries = append(entries, tartest.Symlink(n, target))
			}
			fsys, ours := rootFS(t, entries)
			theirs := t.TempDir()
			for n, content := range base {
				if err := os.WriteFile(filepath.Join(theirs, n), []byte(content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			for n, target := range tc.links {
				if err := os.Symlink(target, filepath.Join(theirs, n)); err != nil {
					t.Fatal(err)
				}
			}
			dirs := [2]string{ours, theirs}
			if _, _, _, err := cacert.Rehash(fsys, "/"); err != nil {
				t.Fatal(err)
			}
			if out, err := exec.Command("openssl", "rehash", dirs[1]).CombinedOutput(); err != nil {
				t.Fatalf("openssl rehash: %v\n%s", err, out)
			}
			got, want := dirState(t, dirs[0]), dirState(t, dirs[1])
			if strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Errorf("rehash differs from openssl rehash:\n got: %s\nwant: %s", fmt.Sprint(got), fmt.Sprint(want))
			}
		})
	}
}

func bytesJoin(b [][]byte) []byte {
	var out []byte
	for _, x := range b {
		out = append(out, x...)
	}
	return out
}

// FuzzRehash builds a CA directory from the input (files chosen among certificates with
// colliding and distinct subjects, a bundle, a CRL, a key with a certificate and junk, under
// names with and without the extensions rehash reads; links with hash names, right, wrong,
// stale, out of range or dangling) and wants the package's rehash to leave exactly what
// `openssl rehash` leaves.
func FuzzRehash(f *testing.F) {
	trusttest.Need(f, "openssl")
	p := trusttest.NewPKI(f)
	c := trusttest.NewCA(f, pkix.Name{CommonName: "C"})
	crlDER, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number: big.NewInt(1), ThisUpdate: time.Unix(1e9, 0), NextUpdate: time.Unix(4e9, 0),
	}, p.Corp.Cert, p.Corp.Key)
	if err != nil {
		f.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(c.Key)
	contents := []string{
		string(p.DistroA.PEM), string(p.Twin.PEM), string(p.DistroB.PEM), string(p.Corp.PEM),
		string(p.DistroA.PEM) + string(p.DistroB.PEM),
		string(pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: crlDER})),
		string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})) + string(c.PEM),
		"junk\n",
	}
	names := []string{"a.pem", "b.crt", "c.cer", "D.PEM", "e.txt", "f.crl", "g.pem", "h.crt"}
	hashes := []string{
		trusttest.OpenSSLHash(f, p.DistroA.PEM) + ".", trusttest.OpenSSLHash(f, p.DistroB.PEM) + ".",
		trusttest.OpenSSLHash(f, p.Corp.PEM) + ".", trusttest.OpenSSLHash(f, p.Corp.PEM) + ".r",
		trusttest.OpenSSLHash(f, c.PEM) + ".",
	}
	f.Add([]byte{0, 0, 0, 1, 1, 1, 2, 4, 4, 3, 0, 0})
	f.Add([]byte{0, 0, 0, 0, 1, 1, 0, 2, 0, 1, 0, 5, 1, 0, 9, 1, 3, 1})
	f.Add([]byte{0, 1, 5, 0, 2, 6, 1, 2, 0, 1, 3, 1, 0, 3, 2})
	f.Fuzz(func(t *testing.T, data []byte) {
		files := map[string]string{}
		links := map[string]string{}
		for i := 0; i+2 < len(data) && i < 3*16; i += 3 {
			a, b := int(data[i+1]), int(data[i+2])
			if data[i]%2 == 0 {
				files[names[a%len(names)]] = contents[b%len(contents)]
			} else {
				target := "gone.pem"
				if b%(len(names)+1) < len(names) {
					target = names[b%(len(names)+1)]
				}
				links[hashes[a%len(hashes)]+fmt.Sprint(a/len(hashes)%4)] = target
			}
		}
		for n := range links {
			delete(files, n)
		}
		var entries []tartest.Entry
		for n, content := range files {
			entries = append(entries, tartest.File(n, content))
		}
		for n, target := range links {
			entries = append(entries, tartest.Symlink(n, target))
		}
		fsys, ours := rootFS(t, entries)
		theirs := t.TempDir()
		for n, content := range files {
			if err := os.WriteFile(filepath.Join(theirs, n), []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		for n, target := range links {
			if err := os.Symlink(target, filepath.Join(theirs, n)); err != nil {
				t.Fatal(err)
			}
		}
		if _, _, _, err := cacert.Rehash(fsys, "/"); err != nil {
			t.Fatal(err)
		}
		// openssl rehash exits non-zero when it counts errors (a file it cannot open, say)
		// but still links what it can: compare what it leaves either way.
		out, rerr := exec.Command("openssl", "rehash", theirs).CombinedOutput()
		if got, want := dirState(t, ours), dirState(t, theirs); strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Logf("openssl rehash: %v\n%s", rerr, out)
			t.Fatalf("rehash differs from openssl rehash:\n got: %v\nwant: %v", got, want)
		}
	})
}
