package cacert_test

import (
	"bytes"
	"crypto/sha1"
	"crypto/x509"
	"encoding/asn1"
	"encoding/binary"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf16"

	"crypto/x509/pkix"

	keystore "github.com/pavlo-v-chernykh/keystore-go/v4"
	pkcs12 "software.sslmate.com/src/go-pkcs12"

	"github.com/img2ext4/img2ext4/cacert"
	"github.com/img2ext4/img2ext4/internal/trusttest"
)

// jksEntry is one entry of a JKS keystore as the JDK reads it.
type jksEntry struct {
	tag   uint32 // 1 private key, 2 trusted certificate
	alias string
	date  int64
	blobs [][]byte // the key and its chain, or the certificate
}

// readJKS reads a JKS keystore as sun.security.provider.JavaKeyStore.engineLoad does
// (version 2: every certificate with its type), checking the SHA-1 integrity digest of
// the UTF-16BE password, "Mighty Aphrodite" and the bytes before it; bytes after the
// digest are ignored, as the JDK ignores them. It is this test's own reader, written from
// the format, not keystore-go. ok is false for a keystore the JDK would not load.
func readJKS(data []byte, password string) (entries []jksEntry, ok bool) {
	p := 0
	u32 := func() (uint32, bool) {
		if len(data)-p < 4 {
			return 0, false
		}
		p += 4
		return binary.BigEndian.Uint32(data[p-4:]), true
	}
	u64 := func() (int64, bool) {
		if len(data)-p < 8 {
			return 0, false
		}
		p += 8
		return int64(binary.BigEndian.Uint64(data[p-8:])), true
	}
	bytesN := func(n int) ([]byte, bool) {
		if n < 0 || len(data)-p < n {
			return nil, false
		}
		p += n
		return data[p-n : p], true
	}
	utf := func() (string, bool) {
		if len(data)-p < 2 {
			return "", false
		}
		n := int(binary.BigEndian.Uint16(data[p:]))
		p += 2
		b, ok := bytesN(n)
		return string(b), ok
	}
	cert := func() ([]byte, bool) {
		if _, ok := utf(); !ok {
			return nil, false
		}
		n, ok := u32()
		if !ok {
			return nil, false
		}
		return bytesN(int(int32(n)))
	}
	magic, ok1 := u32()
	version, ok2 := u32()
	count, ok3 := u32()
	if !ok1 || !ok2 || !ok3 || magic != 0xFEEDFEED || version != 2 || int32(count) < 0 {
		return nil, false
	}
	for i := uint32(0); i < count; i++ {
		var e jksEntry
		var ok bool
		if e.tag, ok = u32(); !ok {
			return nil, false
		}
		if e.alias, ok = utf(); !ok {
			return nil, false
		}
		if e.date, ok = u64(); !ok {
			return nil, false
		}
		switch e.tag {
		case 1:
			n, ok := u32()
			if !ok {
				return nil, false
			}
			key, ok := bytesN(int(int32(n)))
			if !ok {
				return nil, false
			}
			e.blobs = append(e.blobs, key)
			chain, ok := u32()
			if !ok || int32(chain) < 0 {
				return nil, false
			}
			for j := uint32(0); j < chain; j++ {
				c, ok := cert()
				if !ok {
					return nil, false
				}
				e.blobs = append(e.blobs, c)
			}
		case 2:
			c, ok := cert()
			if !ok {
				return nil, false
			}
			e.blobs = append(e.blobs, c)
		default:
			return nil, false
		}
		entries = append(entries, e)
	}
	h := sha1.New()
	for _, c := range utf16.Encode([]rune(password)) {
		h.Write([]byte{byte(c >> 8), byte(c)})
	}
	h.Write([]byte("Mighty Aphrodite"))
	h.Write(data[:p])
	if len(data)-p < sha1.Size || !bytes.Equal(h.Sum(nil), data[p:p+sha1.Size]) {
		return nil, false
	}
	return entries, true
}

// opensslCerts lists the certificates `openssl pkcs12` reads from a PKCS#12 file with
// password, retrying with -legacy for the old algorithms OpenSSL 3 leaves out by default.
func opensslCerts(t *testing.T, data []byte, password string) ([]string, bool) {
	for _, legacy := range []bool{false, true} {
		args := []string{"pkcs12", "-nokeys", "-passin", "pass:" + password}
		if legacy {
			args = append(args, "-legacy")
		}
		cmd := exec.Command("openssl", args...)
		cmd.Stdin = bytes.NewReader(data)
		out, err := cmd.Output()
		if err != nil {
			continue
		}
		return pemCerts(out), true
	}
	return nil, false
}

// keytoolCerts lists the certificates the JDK's `keytool -list -rfc` reads from a PKCS#12
// file with password; ok is false when keytool is missing or refuses the file.
func keytoolCerts(t *testing.T, data []byte, password string) ([]string, bool) {
	if _, err := exec.LookPath("keytool"); err != nil {
		return nil, false
	}
	f := filepath.Join(t.TempDir(), "store.p12")
	if err := os.WriteFile(f, data, 0o600); err != nil {
		t.Fatal(err)
	}
	// The JVM flags only shorten its start (C1 only, one compiler thread, the serial
	// collector): a fuzz worker that takes over 10 s an input is taken for hung.
	out, err := exec.Command("keytool", "-J-XX:TieredStopAtLevel=1", "-J-XX:CICompilerCount=1", "-J-XX:+UseSerialGC",
		"-list", "-rfc", "-storetype", "PKCS12", "-keystore", f, "-storepass", password).Output()
	if err != nil {
		return nil, false
	}
	return pemCerts(out), true
}

// pemCerts returns the DER bytes of the CERTIFICATE blocks in out, in order.
func pemCerts(out []byte) []string {
	var certs []string
	for {
		var b *pem.Block
		b, out = pem.Decode(out)
		if b == nil {
			return certs
		}
		if b.Type == "CERTIFICATE" {
			certs = append(certs, string(b.Bytes))
		}
	}
}

// union returns the distinct strings of a and b, sorted.
func union(a, b []string) []string {
	u := slices.Concat(a, b)
	slices.Sort(u)
	return slices.Compact(u)
}

// FuzzJavaKeystore adds a choice of three CAs to fuzzed keystore bytes as cacert does
// for a Java cacerts file (password "changeit") and checks the result with readers that
// are not the libraries cacert uses: a JKS (FEEDFEED magic) against readJKS, this test's
// reader of the format: when the JDK would load the input, so must cacert, and its
// output loads too, keeps every entry (alias, date, bytes) and adds one trusted entry
// under a new alias for each CA not in it already; a PKCS#12 store against `openssl
// pkcs12`, or `keytool` where OpenSSL refuses the store: cacert reads no store that both
// refuse, and when it changes one, the same reader reads the output (with the password,
// or without for a password-less input) as the input's certificates and the new CAs.
// Either way, "added" counts the CAs that were not there, and adding nothing returns the
// input unchanged.
func FuzzJavaKeystore(f *testing.F) {
	trusttest.Need(f, "openssl")
	cas := []*trusttest.CA{
		trusttest.NewCA(f, pkix.Name{CommonName: "Fuzz Root A"}),
		trusttest.NewCA(f, pkix.Name{CommonName: "Fuzz Root B"}),
		trusttest.NewCA(f, pkix.Name{Organization: []string{"Fuzz"}, CommonName: "Fuzz Root C"}),
	}
	f.Add(trusttest.JKS(f, cas[0]), byte(3))
	f.Add(trusttest.JKS(f, cas[0], cas[1]), byte(7))
	f.Add(trusttest.JKS(f, cas[0]), byte(1))
	f.Add(trusttest.JKS(f), byte(4))
	ks := keystore.New()
	ks.SetTrustedCertificateEntry("UPPER", keystore.TrustedCertificateEntry{CreationTime: time.Unix(1, 0), Certificate: keystore.Certificate{Type: "X.509", Content: cas[2].Cert.Raw}})
	var jks bytes.Buffer
	ks.Store(&jks, []byte("changeit"))
	f.Add(jks.Bytes(), byte(7))
	for _, enc := range []*pkcs12.Encoder{pkcs12.Modern2023, pkcs12.Passwordless, pkcs12.LegacyRC2} {
		pw := "changeit"
		if enc == pkcs12.Passwordless {
			pw = ""
		}
		b, err := enc.EncodeTrustStore([]*x509.Certificate{cas[0].Cert}, pw)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, byte(3))
	}
	f.Add([]byte{0xfe, 0xed, 0xfe, 0xed}, byte(1))
	f.Add([]byte{0xce, 0xce, 0xce, 0xce}, byte(1))
	f.Fuzz(func(t *testing.T, data []byte, pick byte) {
		if len(data) > 1<<16 {
			return
		}
		var certs []*x509.Certificate
		var adding []string
		for i, ca := range cas {
			if pick&(1<<i) != 0 {
				certs = append(certs, ca.Cert)
				adding = append(adding, string(ca.Cert.Raw))
			}
		}
		if len(data) >= 4 && binary.BigEndian.Uint32(data) == 0xFEEDFEED {
			in, jdk := readJKS(data, "changeit")
			out, added, err := cacert.AddJKS(data, certs, "changeit", time.Time{})
			if !jdk {
				return
			}
			if err != nil {
				t.Fatalf("the JDK loads %x, AddJKS: %v", data, err)
			}
			have := map[string]bool{}
			aliases := map[string]bool{}
			for _, e := range in {
				aliases[e.alias] = true
				if e.tag == 2 {
					have[string(e.blobs[0])] = true
				}
			}
			var want []string
			for _, c := range adding {
				if !have[c] {
					have[c] = true
					want = append(want, c)
				}
			}
			if added != len(want) {
				t.Fatalf("added %d, want %d", added, len(want))
			}
			if added == 0 {
				if !bytes.Equal(out, data) {
					t.Fatalf("nothing added, but the keystore changed")
				}
				return
			}
			got, ok := readJKS(out, "changeit")
			if !ok {
				t.Fatalf("the JDK would not load the output %x", out)
			}
			byAlias := map[string]jksEntry{}
			for _, e := range got {
				if _, dup := byAlias[e.alias]; dup {
					t.Fatalf("alias %q twice in the output", e.alias)
				}
				byAlias[e.alias] = e
			}
			for _, e := range in {
				g, ok := byAlias[e.alias]
				if !ok || g.tag != e.tag || g.date != e.date || !slices.EqualFunc(g.blobs, e.blobs, bytes.Equal) {
					t.Fatalf("entry %q of the input: %+v in the output, want %+v", e.alias, g, e)
				}
				delete(byAlias, e.alias)
			}
			var extra []string
			for a, e := range byAlias {
				if e.tag != 2 || aliases[a] {
					t.Fatalf("new entry %q: tag %d", a, e.tag)
				}
				extra = append(extra, string(e.blobs[0]))
			}
			slices.Sort(extra)
			slices.Sort(want)
			if !slices.Equal(extra, want) {
				t.Fatalf("new entries: %d certificates, want %d", len(extra), len(want))
			}
			return
		}
		out, added, err := cacert.AddPKCS12(data, certs, "changeit")
		if err != nil {
			return
		}
		// OpenSSL reads the store, or else the JDK: keytool loads stores whose
		// certificates OpenSSL cannot parse (extensions it refuses), and cacert writes
		// for the JDK. Its JVM starts only on such inputs.
		read := opensslCerts
		in, ok := read(t, data, "changeit")
		pw := "changeit"
		if !ok {
			if in, ok = read(t, data, ""); ok {
				pw = ""
			}
		}
		if !ok {
			read = keytoolCerts
			if in, ok = read(t, data, "changeit"); !ok {
				if in, ok = read(t, data, ""); !ok {
					t.Fatalf("AddPKCS12 read %x, which neither openssl pkcs12 nor keytool can read", data)
				}
				pw = ""
			}
		}
		want := union(in, adding)
		if added != len(want)-len(union(in, nil)) {
			t.Fatalf("added %d; openssl reads %d certificates in the input, %d after adding %d", added, len(union(in, nil)), len(want), len(adding))
		}
		if added == 0 {
			if !bytes.Equal(out, data) {
				t.Fatalf("nothing added, but the store changed")
			}
			return
		}
		got, ok := read(t, out, pw)
		if !ok {
			t.Fatalf("the reader of the input (openssl pkcs12 or keytool) cannot read the output (password %q)", pw)
		}
		if g := union(got, nil); !slices.Equal(g, want) || len(got) != len(g) {
			t.Fatalf("openssl reads %d certificates (%d distinct) in the output, want %d", len(got), len(g), len(want))
		}
	})
}

// TestJKSDeclaredLength: a JKS keystore of a few bytes that declares a 1 GiB certificate
// is refused without allocating what it declares (keystore-go allocates a declared length
// before reading it: a 4 GiB allocation for a hostile cacerts file). Found by the
// FuzzJavaKeystore campaign (inputs that took 30 and 150 s).
func TestJKSDeclaredLength(t *testing.T) {
	var b bytes.Buffer
	for _, v := range []uint32{0xFEEDFEED, 2, 1, 2} { // magic, version, one entry, trusted
		binary.Write(&b, binary.BigEndian, v)
	}
	binary.Write(&b, binary.BigEndian, uint16(1))
	b.WriteString("a")
	binary.Write(&b, binary.BigEndian, int64(0))
	binary.Write(&b, binary.BigEndian, uint16(5))
	b.WriteString("X.509")
	binary.Write(&b, binary.BigEndian, uint32(1<<30))
	b.WriteString("only a few bytes")
	ca := trusttest.NewCA(t, pkix.Name{CommonName: "Fuzz Root A"})
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, _, err := cacert.AddJKS(b.Bytes(), []*x509.Certificate{ca.Cert}, "changeit", time.Time{})
	runtime.ReadMemStats(&after)
	if err == nil {
		t.Fatal("a truncated keystore was accepted")
	}
	if n := after.TotalAlloc - before.TotalAlloc; n > 64<<20 {
		t.Fatalf("refusing it allocated %d MiB", n>>20)
	}
	t.Log(err)
}

// TestPKCS12AuthSafeTag: a PKCS#12 trust store whose authSafe content is not an OCTET
// STRING (here a constructed BOOLEAN, 0x21, as a FuzzJavaKeystore campaign made it) is
// refused, as the JDK and OpenSSL refuse it; go-pkcs12 alone would read it and cacert would
// rewrite it.
func TestPKCS12AuthSafeTag(t *testing.T) {
	ca := trusttest.NewCA(t, pkix.Name{CommonName: "AuthSafe Root"})
	good, err := pkcs12.Passwordless.EncodeTrustStore([]*x509.Certificate{ca.Cert}, "")
	if err != nil {
		t.Fatal(err)
	}
	// PFX: SEQUENCE { INTEGER 3, SEQUENCE { OID data, [0] { OCTET STRING ... } } ... };
	// with an explicit tag, encoding/asn1 gives the OCTET STRING whole as the [0]'s bytes.
	var pfx struct {
		Version  int
		AuthSafe struct {
			ContentType asn1.ObjectIdentifier
			Content     asn1.RawValue `asn1:"tag:0,explicit,optional"`
		}
		MacData asn1.RawValue `asn1:"optional"`
	}
	if _, err := asn1.Unmarshal(good, &pfx); err != nil {
		t.Fatal(err)
	}
	at := bytes.Index(good, pfx.AuthSafe.Content.Bytes)
	if at < 0 || good[at] != 0x04 {
		t.Fatalf("no OCTET STRING authSafe content in the encoded store %x", good)
	}
	bad := bytes.Clone(good)
	bad[at] = 0x21
	ca2 := trusttest.NewCA(t, pkix.Name{CommonName: "Another Root"})
	if _, added, err := cacert.AddPKCS12(good, []*x509.Certificate{ca2.Cert}, "changeit"); err != nil || added != 1 {
		t.Fatalf("the well-formed store: added %d, %v", added, err)
	}
	_, _, err = cacert.AddPKCS12(bad, []*x509.Certificate{ca2.Cert}, "changeit")
	if err == nil || !strings.Contains(err.Error(), "damaged") {
		t.Fatalf("AddPKCS12 of a store with a 0x21 authSafe content: %v, want a refusal", err)
	}
	if _, ok := opensslCerts(t, bad, ""); ok {
		t.Errorf("openssl pkcs12 reads the damaged store: the test's premise is wrong")
	}
	if _, ok := keytoolCerts(t, bad, ""); ok {
		t.Errorf("keytool reads the damaged store: the test's premise is wrong")
	}
}

// TestPKCS12CertificateStructure: a PKCS#12 trust store is refused when one of its
// certificates has elements RFC 5280 does not allow where crypto/x509 ignores them (bytes
// after a public key or an AlgorithmIdentifier's parameters, found by FuzzJavaKeystore
// campaigns; an attribute with three elements); the JDK and OpenSSL refuse each such store. A store the JDK wrote from this machine's Java
// cacerts (every CA of the distribution) is read.
func TestPKCS12CertificateStructure(t *testing.T) {
	trusttest.Need(t, "openssl", "keytool")
	ca := trusttest.NewCA(t, pkix.Name{CommonName: "Structure Root"})
	other := trusttest.NewCA(t, pkix.Name{CommonName: "Another Root"})
	seq := func(e ...asn1.RawValue) asn1.RawValue { return derSeq(t, e...) }
	elems := func(der []byte) []asn1.RawValue { return derElems(t, der) }
	null := asn1.RawValue{FullBytes: []byte{0x05, 0x00}}
	cert := elems(ca.Cert.Raw) // tbs, signatureAlgorithm, signature
	tbs := elems(cert[0].FullBytes)
	// tbs: [0] version, serial, signature, issuer, validity, subject, spki, [3] extensions
	build := func(change func(tbs []asn1.RawValue) []asn1.RawValue) []byte {
		t2 := change(slices.Clone(tbs))
		return seq(seq(t2...), cert[1], cert[2]).FullBytes
	}
	cases := map[string][]byte{
		"bytes after the public key": build(func(e []asn1.RawValue) []asn1.RawValue {
			e[6] = seq(append(elems(e[6].FullBytes), null)...)
			return e
		}),
		"public key AlgorithmIdentifier with two parameters": build(func(e []asn1.RawValue) []asn1.RawValue {
			spki := elems(e[6].FullBytes)
			spki[0] = seq(append(elems(spki[0].FullBytes), null, null)...)
			e[6] = seq(spki...)
			return e
		}),
		"attribute with three elements": build(func(e []asn1.RawValue) []asn1.RawValue {
			rdn := elems(e[5].FullBytes)[0]                  // the subject's first SET
			atv := elems(rdn.FullBytes)[0]                   // its first attribute
			atv = seq(append(elems(atv.FullBytes), null)...) // OID, value, NULL
			set, _ := asn1.Marshal(asn1.RawValue{Tag: asn1.TagSet, IsCompound: true, Bytes: atv.FullBytes})
			e[5] = seq(asn1.RawValue{FullBytes: set})
			return e
		}),
	}
	for name, der := range cases {
		t.Run(name, func(t *testing.T) {
			c, err := x509.ParseCertificate(der)
			if err != nil {
				t.Skipf("crypto/x509 refuses this certificate itself (%v): nothing for cacert to add", err)
			}
			store, err := pkcs12.Passwordless.EncodeTrustStore([]*x509.Certificate{c}, "")
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := opensslCerts(t, store, ""); ok {
				t.Errorf("openssl pkcs12 reads the store: the test's premise is wrong")
			}
			if _, ok := keytoolCerts(t, store, ""); ok {
				t.Errorf("keytool reads the store: the test's premise is wrong")
			}
			if _, _, err := cacert.AddPKCS12(store, []*x509.Certificate{other.Cert}, "changeit"); err == nil || !strings.Contains(err.Error(), "damaged") {
				t.Fatalf("AddPKCS12: %v, want a refusal of the damaged store", err)
			}
		})
	}

	// The distribution's CAs, in a PKCS#12 store written by the JDK.
	const system = "/etc/ssl/certs/java/cacerts"
	if _, err := os.Stat(system); err != nil {
		t.Logf("no %s: the distribution's CAs are not checked", system)
		return
	}
	p12 := filepath.Join(t.TempDir(), "cacerts.p12")
	if out, err := exec.Command("keytool", "-importkeystore", "-noprompt", "-srckeystore", system, "-srcstorepass", "changeit",
		"-destkeystore", p12, "-deststoretype", "PKCS12", "-deststorepass", "changeit").CombinedOutput(); err != nil {
		t.Fatalf("keytool -importkeystore: %v\n%s", err, out)
	}
	data, err := os.ReadFile(p12)
	if err != nil {
		t.Fatal(err)
	}
	in, ok := opensslCerts(t, data, "changeit")
	if !ok || len(in) == 0 {
		t.Fatalf("openssl reads %d certificates of the JDK's store (%v)", len(in), ok)
	}
	out, added, err := cacert.AddPKCS12(data, []*x509.Certificate{other.Cert}, "changeit")
	if err != nil || added != 1 {
		t.Fatalf("AddPKCS12 of the distribution's %d CAs: added %d, %v", len(in), added, err)
	}
	if got, ok := opensslCerts(t, out, "changeit"); !ok || len(got) != len(in)+1 {
		t.Fatalf("openssl reads %d certificates in the output, want %d", len(got), len(in)+1)
	}
}

// derSeq returns the DER SEQUENCE of the elements e (each given by its FullBytes).
func derSeq(t testing.TB, e ...asn1.RawValue) asn1.RawValue {
	t.Helper()
	var b []byte
	for _, v := range e {
		b = append(b, v.FullBytes...)
	}
	full, err := asn1.Marshal(asn1.RawValue{Tag: asn1.TagSequence, IsCompound: true, Bytes: b})
	if err != nil {
		t.Fatal(err)
	}
	return asn1.RawValue{Tag: asn1.TagSequence, IsCompound: true, Bytes: b, FullBytes: full}
}

// derElems returns the elements of the constructed DER value der.
func derElems(t testing.TB, der []byte) []asn1.RawValue {
	t.Helper()
	var v asn1.RawValue
	if _, err := asn1.Unmarshal(der, &v); err != nil {
		t.Fatal(err)
	}
	var e []asn1.RawValue
	for b := v.Bytes; len(b) > 0; {
		var x asn1.RawValue
		var err error
		if b, err = asn1.Unmarshal(b, &x); err != nil {
			t.Fatal(err)
		}
		e = append(e, x)
	}
	return e
}

// derInt returns the DER INTEGER n.
func derInt(t testing.TB, n int64) asn1.RawValue {
	t.Helper()
	b, err := asn1.Marshal(n)
	if err != nil {
		t.Fatal(err)
	}
	return asn1.RawValue{FullBytes: b}
}

// TestPKCS12IterationCount: a PKCS#12 store declaring more key-derivation iterations than
// the JDK accepts (5,000,000) is refused before any key is derived: a few hundred bytes
// declaring 2^31-1 would otherwise hold a conversion for about an hour. The MAC's count is
// set in a real store (its MAC no longer matches: the derivation comes first); the
// ciphers' counts, PKCS#12's and PBES2's, in EncryptedData built here.
func TestPKCS12IterationCount(t *testing.T) {
	ca := trusttest.NewCA(t, pkix.Name{CommonName: "Iterations Root"})
	other := trusttest.NewCA(t, pkix.Name{CommonName: "Another Root"})
	good, err := pkcs12.Modern2023.EncodeTrustStore([]*x509.Certificate{ca.Cert}, "changeit")
	if err != nil {
		t.Fatal(err)
	}
	pfx := derElems(t, good) // version, authSafe, macData
	mac := derElems(t, pfx[2].FullBytes)
	if len(mac) != 3 {
		t.Fatalf("MacData has %d elements, want a digest, a salt and a count", len(mac))
	}
	for _, n := range []int64{5_000_001, 1<<31 - 1, 0} {
		bad := derSeq(t, pfx[0], pfx[1], derSeq(t, mac[0], mac[1], derInt(t, n))).FullBytes
		done := make(chan error, 1)
		go func() {
			_, _, err := cacert.AddPKCS12(bad, []*x509.Certificate{other.Cert}, "changeit")
			done <- err
		}()
		select {
		case err := <-done:
			if err == nil || !strings.Contains(err.Error(), "iteration count") {
				t.Errorf("MAC iteration count %d: %v, want a refusal naming the iteration count", n, err)
			}
		case <-time.After(time.Minute):
			t.Fatalf("MAC iteration count %d: AddPKCS12 still deriving keys after a minute", n)
		}
	}
	if _, added, err := cacert.AddPKCS12(good, []*x509.Certificate{other.Cert}, "changeit"); err != nil || added != 1 {
		t.Fatalf("the store as go-pkcs12 wrote it: added %d, %v", added, err)
	}

	oid := func(o asn1.ObjectIdentifier) asn1.RawValue {
		b, err := asn1.Marshal(o)
		if err != nil {
			t.Fatal(err)
		}
		return asn1.RawValue{FullBytes: b}
	}
	salt := asn1.RawValue{FullBytes: []byte{0x04, 0x02, 0xab, 0xcd}}
	content := asn1.RawValue{FullBytes: []byte{0x80, 0x01, 0x00}} // [0] IMPLICIT OCTET STRING
	pkcs12PBE := func(n int64) asn1.RawValue {                    // pbeWithSHAAnd3-KeyTripleDES-CBC
		return derSeq(t, oid(asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 12, 1, 3}), derSeq(t, salt, derInt(t, n)))
	}
	pbes2 := func(n int64) asn1.RawValue { // PBKDF2, AES-256-CBC
		kdf := derSeq(t, oid(asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 5, 12}), derSeq(t, salt, derInt(t, n)))
		cipher := derSeq(t, oid(asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 42}), salt)
		return derSeq(t, oid(asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 5, 13}), derSeq(t, kdf, cipher))
	}
	for _, c := range []struct {
		name string
		alg  func(int64) asn1.RawValue
	}{{"PKCS#12 PBE", pkcs12PBE}, {"PBES2", pbes2}} {
		for _, n := range []int64{1, 2048, 5_000_000, 5_000_001, 1<<31 - 1, 0} {
			ed := derSeq(t, derInt(t, 0), derSeq(t, oid(asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 1}), c.alg(n), content))
			err := cacert.CheckEncryptedData(ed)
			if want := n >= 1 && n <= 5_000_000; (err == nil) != want {
				t.Errorf("%s with %d iterations: %v, want accepted %v", c.name, n, err, want)
			}
		}
	}
}
