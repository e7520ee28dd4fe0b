package cacert

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"fmt"
	"time"

	keystore "github.com/pavlo-v-chernykh/keystore-go/v4"
	pkcs12 "software.sslmate.com/src/go-pkcs12"
)

const (
	jksMagic   = 0xFEEDFEED
	jceksMagic = 0xCECECECE
)

// java adds the missing certificates to the Java keystore at name, if it exists.
func (in *installer) java(name string) error {
	real, _, claimed, err := in.claim(name, false)
	if err != nil || !claimed {
		return err
	}
	data, err := in.readFile(real)
	if err != nil {
		return err
	}
	var out []byte
	var added int
	var kind Kind
	switch {
	case len(data) >= 4 && binary.BigEndian.Uint32(data) == jksMagic:
		kind = KindJKS
		out, added, err = addJKS(data, in.certs, in.o.javaPassword, in.o.entryTime)
	case len(data) >= 4 && binary.BigEndian.Uint32(data) == jceksMagic:
		err = fmt.Errorf("JCEKS keystores are not supported; convert it to PKCS#12 with keytool -importkeystore")
	default:
		kind = KindPKCS12
		out, added, err = addPKCS12(data, in.certs, in.o.javaPassword)
	}
	if err != nil {
		err = fmt.Errorf("cacert: Java keystore %s: %w", real, err)
		if in.o.strict {
			return err
		}
		in.warn("skipping %v", err)
		return nil
	}
	if added == 0 {
		return nil
	}
	if err := in.writeFile(real, out); err != nil {
		return err
	}
	in.rep.Changes = append(in.rep.Changes, Change{Path: real, Kind: kind, Added: added})
	return nil
}

// addJKS adds certs to the JKS keystore data with github.com/pavlo-v-chernykh/keystore-go,
// keeping every existing entry, its alias and its time. Entries are written in alias order.
func addJKS(data []byte, certs []*x509.Certificate, password string, entryTime time.Time) ([]byte, int, error) {
	if err := checkJKSLengths(data); err != nil {
		return nil, 0, err
	}
	ks := keystore.New(keystore.WithOrderedAliases(), keystore.WithCaseExactAliases())
	if err := ks.Load(bytes.NewReader(data), []byte(password)); err != nil {
		return nil, 0, fmt.Errorf("read JKS (is the password %q right? see WithJavaPassword): %w", password, err)
	}
	have := map[string]bool{}
	aliases := map[string]bool{}
	for _, a := range ks.Aliases() {
		aliases[a] = true
		if e, err := ks.GetTrustedCertificateEntry(a); err == nil {
			have[string(e.Certificate.Content)] = true
		}
	}
	added := 0
	for _, c := range certs {
		if have[string(c.Raw)] {
			continue
		}
		a := uniqueAlias(fileStem(c), aliases)
		t := c.NotBefore
		if !entryTime.IsZero() {
			t = entryTime
		}
		err := ks.SetTrustedCertificateEntry(a, keystore.TrustedCertificateEntry{
			CreationTime: t,
			Certificate:  keystore.Certificate{Type: "X.509", Content: c.Raw},
		})
		if err != nil {
			return nil, 0, fmt.Errorf("add %s: %w", a, err)
		}
		have[string(c.Raw)] = true
		added++
	}
	if added == 0 {
		return data, 0, nil
	}
	var buf bytes.Buffer
	if err := ks.Store(&buf, []byte(password)); err != nil {
		return nil, 0, fmt.Errorf("write JKS: %w", err)
	}
	return buf.Bytes(), added, nil
}

// checkJKSLengths walks the entries of the JKS keystore data (the JDK's format: magic,
// version, count, then per entry a tag, an alias, a date and a private key with its
// certificate chain or a trusted certificate, each certificate with its type from version
// 2 on) and refuses one whose declared lengths run past its end. keystore-go allocates
// what a length declares before reading it: up to 4 GiB for a few bytes of a hostile or
// damaged cacerts file in an image.
func checkJKSLengths(data []byte) error {
	p := 8 // magic and version, checked by keystore-go
	need := func(n uint64, what string) error {
		if n > uint64(len(data)-p) {
			return fmt.Errorf("read JKS: %s of %d bytes at offset %d, but the file has %d bytes", what, n, p, len(data))
		}
		p += int(n)
		return nil
	}
	u32 := func(what string) (uint32, error) {
		if err := need(4, what); err != nil {
			return 0, err
		}
		return binary.BigEndian.Uint32(data[p-4:]), nil
	}
	utf := func(what string) error {
		if err := need(2, what); err != nil {
			return err
		}
		return need(uint64(binary.BigEndian.Uint16(data[p-2:])), what)
	}
	if len(data) < 8 {
		return fmt.Errorf("read JKS: %d bytes", len(data))
	}
	version := binary.BigEndian.Uint32(data[4:])
	cert := func() error {
		if version == 2 {
			if err := utf("certificate type"); err != nil {
				return err
			}
		}
		n, err := u32("certificate length")
		if err != nil {
			return err
		}
		return need(uint64(n), "certificate")
	}
	count, err := u32("entry count")
	if err != nil {
		return err
	}
	for i := uint32(0); i < count; i++ {
		tag, err := u32("entry tag")
		if err != nil {
			return err
		}
		if err := utf("alias"); err != nil {
			return err
		}
		if err := need(8, "entry date"); err != nil {
			return err
		}
		switch tag {
		case 1:
			n, err := u32("private key length")
			if err != nil {
				return err
			}
			if err := need(uint64(n), "private key"); err != nil {
				return err
			}
			chain, err := u32("certificate chain length")
			if err != nil {
				return err
			}
			for j := uint32(0); j < chain; j++ {
				if err := cert(); err != nil {
					return err
				}
			}
		case 2:
			if err := cert(); err != nil {
				return err
			}
		default:
			return fmt.Errorf("read JKS: entry %d has the unknown tag %d", i, tag)
		}
	}
	return nil
}

// addPKCS12 adds certs to the PKCS#12 trust store data with software.sslmate.com/src/go-pkcs12.
// A password-less store stays password-less; otherwise it is written with
// pkcs12.Modern2023 (PBES2, AES-256, HMAC-SHA-256: Java 8u301, 11.0.12 and later). go-pkcs12
// does not return the aliases of existing entries, so they are rewritten as the
// certificates' subjects. Salts come from a stream seeded by the input, so the same input
// gives the same bytes.
func addPKCS12(data []byte, certs []*x509.Certificate, password string) ([]byte, int, error) {
	if err := checkPFX(data); err != nil {
		return nil, 0, err
	}
	enc := pkcs12.Modern2023
	existing, err := pkcs12.DecodeTrustStore(data, password)
	if err != nil {
		var err2 error
		if existing, err2 = pkcs12.DecodeTrustStore(data, ""); err2 != nil {
			return nil, 0, fmt.Errorf("read PKCS#12 trust store (is the password %q right? see WithJavaPassword): %w", password, err)
		}
		enc, password = pkcs12.Passwordless, ""
	}
	have := map[string]bool{}
	aliases := map[string]bool{}
	var entries []pkcs12.TrustStoreEntry
	for i, c := range existing {
		if err := checkCertificate(c.Raw); err != nil {
			return nil, 0, fmt.Errorf("read PKCS#12 trust store: certificate %d (%s): %w: the file is damaged; Java would not load it either", i+1, c.Subject, err)
		}
		if have[string(c.Raw)] {
			continue
		}
		have[string(c.Raw)] = true
		entries = append(entries, pkcs12.TrustStoreEntry{Cert: c, FriendlyName: uniqueAlias(c.Subject.String(), aliases)})
	}
	added := 0
	for _, c := range certs {
		if have[string(c.Raw)] {
			continue
		}
		have[string(c.Raw)] = true
		entries = append(entries, pkcs12.TrustStoreEntry{Cert: c, FriendlyName: uniqueAlias(fileStem(c), aliases)})
		added++
	}
	if added == 0 {
		return data, 0, nil
	}
	seed := sha256.New()
	seed.Write(data)
	for _, c := range certs {
		seed.Write(c.Raw)
	}
	out, err := enc.WithRand(newDetRand(seed.Sum(nil))).EncodeTrustStoreEntries(entries, password)
	if err != nil {
		return nil, 0, fmt.Errorf("write PKCS#12 trust store: %w", err)
	}
	return out, added, nil
}

// uniqueAlias returns a, or a with " (n)" appended, whichever is not in used yet, and
// marks it used.
func uniqueAlias(a string, used map[string]bool) string {
	name := a
	for n := 2; used[name]; n++ {
		name = fmt.Sprintf("%s (%d)", a, n)
	}
	used[name] = true
	return name
}

// detRand is a deterministic byte stream: SHA-256 of the seed and a counter.
type detRand struct {
	seed []byte
	n    uint64
	buf  []byte
}

func newDetRand(seed []byte) *detRand { return &detRand{seed: seed} }

func (d *detRand) Read(p []byte) (int, error) {
	for i := range p {
		if len(d.buf) == 0 {
			var ctr [8]byte
			binary.BigEndian.PutUint64(ctr[:], d.n)
			d.n++
			sum := sha256.Sum256(append(append([]byte(nil), d.seed...), ctr[:]...))
			d.buf = sum[:]
		}
		p[i] = d.buf[0]
		d.buf = d.buf[1:]
	}
	return len(p), nil
}
