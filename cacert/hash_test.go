package cacert_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/asn1"
	"encoding/binary"
	"encoding/pem"
	"fmt"
	"math/big"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf16"

	"github.com/img2ext4/img2ext4/cacert"
)

var (
	oidCN = asn1.ObjectIdentifier{2, 5, 4, 3}
	oidO  = asn1.ObjectIdentifier{2, 5, 4, 10}
	oidOU = asn1.ObjectIdentifier{2, 5, 4, 11}
	oidC  = asn1.ObjectIdentifier{2, 5, 4, 6}
	oidE  = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 1}
)

type atv struct {
	oid asn1.ObjectIdentifier
	tag int
	val []byte
}

func tlv(tag int, compound bool, body []byte) []byte {
	b, err := asn1.Marshal(asn1.RawValue{Class: asn1.ClassUniversal, Tag: tag, IsCompound: compound, Bytes: body})
	if err != nil {
		panic(err)
	}
	return b
}

// name encodes a DER Name from RDNs of attributes, keeping the given order inside a set.
func name(rdns ...[]atv) []byte {
	var seq []byte
	for _, rdn := range rdns {
		var set []byte
		for _, a := range rdn {
			oid, _ := asn1.Marshal(a.oid)
			set = append(set, tlv(asn1.TagSequence, true, append(oid, tlv(a.tag, false, a.val)...))...)
		}
		seq = append(seq, tlv(asn1.TagSet, true, set)...)
	}
	return tlv(asn1.TagSequence, true, seq)
}

func bmp(s string) []byte {
	var b []byte
	for _, u := range utf16.Encode([]rune(s)) {
		b = binary.BigEndian.AppendUint16(b, u)
	}
	return b
}

func ucs4(s string) []byte {
	var b []byte
	for _, r := range s {
		b = binary.BigEndian.AppendUint32(b, uint32(r))
	}
	return b
}

var signer = sync.OnceValue(func() *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	return k
})

// certWithSubject returns a PEM certificate whose subject is the DER name raw.
func certWithSubject(t testing.TB, raw []byte) []byte {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(7),
		RawSubject:   raw,
		RawIssuer:    raw,
		NotBefore:    time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC),
		NotAfter:     time.Date(2090, 1, 1, 0, 0, 0, 0, time.UTC),
	}
	k := signer()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// opensslHash runs `openssl x509 -hash -noout`; ok is false when openssl refuses the
// certificate.
func opensslHash(t testing.TB, certPEM []byte) (string, bool) {
	cmd := exec.Command("openssl", "x509", "-hash", "-noout")
	cmd.Stdin = bytes.NewReader(certPEM)
	out, err := cmd.Output()
	if err != nil {
		return "", false
	}
	return strings.TrimSpace(string(out)), true
}

var hashCases = []struct {
	name string
	raw  []byte
}{
	{"printable", name([]atv{{oidCN, asn1.TagPrintableString, []byte("Example")}})},
	// OpenSSL does not check the constructed bit of the name's SEQUENCE OF and SET OF
	// (found by FuzzSubjectHash: "\x10\x00" hashed as the empty name).
	{"primitive-form empty name", []byte{0x10, 0x00}},
	{"primitive-form name", []byte("\x10\x0d\x31\x0b\x30\x09\x06\x03\x55\x04\x03\x0c\x02AB")},
	{"primitive-form set", []byte("\x30\x0d\x11\x0b\x30\x09\x06\x03\x55\x04\x03\x0c\x02AB")},
	{"case and spaces", name(
		[]atv{{oidC, asn1.TagPrintableString, []byte("DE")}},
		[]atv{{oidO, asn1.TagUTF8String, []byte("  Hello   World\t CA  ")}},
		[]atv{{oidCN, asn1.TagUTF8String, []byte("A\n\v\f\rB")}},
	)},
	{"multi-valued RDN unsorted", name([]atv{{oidO, asn1.TagUTF8String, []byte("zeta")}, {oidCN, asn1.TagUTF8String, []byte("Alpha")}, {oidOU, asn1.TagPrintableString, []byte("Mid")}})},
	{"BMPString", name([]atv{{oidCN, asn1.TagBMPString, bmp("Zürich ROOT")}})},
	{"T61String latin-1", name([]atv{{oidCN, asn1.TagT61String, []byte("Caf\xe9 CA")}})},
	{"UniversalString", name([]atv{{oidCN, 28, ucs4("Univ ÉCOLE")}})},
	{"IA5String email", name([]atv{{oidE, asn1.TagIA5String, []byte("Admin@Example.COM")}})},
	{"NumericString kept", name([]atv{{asn1.ObjectIdentifier{2, 5, 4, 5}, asn1.TagNumericString, []byte("12  34")}})},
	{"non-ASCII UTF-8 kept", name([]atv{{oidCN, asn1.TagUTF8String, []byte("ÄÖÜ Straße Ωmega")}})},
	{"only spaces", name([]atv{{oidCN, asn1.TagUTF8String, []byte("   ")}})},
	{"empty", name()},
	{"same value two types", name([]atv{{oidCN, asn1.TagPrintableString, []byte("X")}}, []atv{{oidCN, asn1.TagUTF8String, []byte("x")}})},
	{"long value", name([]atv{{oidCN, asn1.TagUTF8String, bytes.Repeat([]byte("Ab "), 100)}})},
}

// TestSubjectHash compares SubjectHash with `openssl x509 -hash` on names of every string
// type OpenSSL canonicalises and some it keeps.
func TestSubjectHash(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl not found on PATH (Debian: apt-get install openssl)")
	}
	for _, tc := range hashCases {
		t.Run(tc.name, func(t *testing.T) {
			p := certWithSubject(t, tc.raw)
			want, ok := opensslHash(t, p)
			if !ok {
				t.Fatal("openssl refuses the test certificate")
			}
			got, err := cacert.SubjectHash(tc.raw)
			if err != nil {
				t.Fatal(err)
			}
			if g := fmt.Sprintf("%08x", got); g != want {
				t.Errorf("SubjectHash = %s, openssl x509 -hash = %s", g, want)
			}
		})
	}
}

// FuzzSubjectHash checks SubjectHash against `openssl x509 -hash` on any name openssl
// accepts: when openssl hashes it, SubjectHash must succeed with the same value.
func FuzzSubjectHash(f *testing.F) {
	if _, err := exec.LookPath("openssl"); err != nil {
		f.Skip("openssl not found on PATH (Debian: apt-get install openssl)")
	}
	for _, tc := range hashCases {
		f.Add(tc.raw)
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		var v asn1.RawValue
		if rest, err := asn1.Unmarshal(raw, &v); err != nil || len(rest) != 0 || v.Tag != asn1.TagSequence {
			t.Skip()
		}
		got, err := cacert.SubjectHash(raw)
		want, ok := opensslHash(t, certWithSubject(t, raw))
		if !ok {
			return
		}
		if err != nil {
			t.Fatalf("openssl hashes the name as %s, SubjectHash fails: %v", want, err)
		}
		if g := fmt.Sprintf("%08x", got); g != want {
			t.Fatalf("SubjectHash = %s, openssl x509 -hash = %s", g, want)
		}
	})
}

// FuzzSubjectHashNames builds names from the input (one to four RDNs of one to three
// attributes; CN, O, OU, C, emailAddress or serialNumber; PrintableString, UTF8String,
// IA5String, T61String, BMPString, UniversalString or NumericString; values from the
// input bytes, often spaces, tabs, case and non-ASCII) so that the fuzzer spends its time
// on what OpenSSL canonicalises, and wants SubjectHash to equal `openssl x509 -hash`
// wherever openssl takes the certificate.
func FuzzSubjectHashNames(f *testing.F) {
	if _, err := exec.LookPath("openssl"); err != nil {
		f.Skip("openssl not found on PATH (Debian: apt-get install openssl)")
	}
	f.Add([]byte("\x00\x01\x00Example"))
	f.Add([]byte("\x11\x12\x01  Hello \t World \x00\x05\x02zeta\x01\x04\x03ALPHA"))
	f.Add([]byte("\x00\x03\x04Z\xfcrich\x00\x03\x05Caf\xe9\x00\x03\x06\xc3\x84b"))
	f.Add([]byte("\x00\x04\x02Admin@Example.COM\x00\x05\x06 12  34 "))
	oids := []asn1.ObjectIdentifier{oidCN, oidO, oidOU, oidC, oidE, {2, 5, 4, 5}}
	tags := []int{asn1.TagPrintableString, asn1.TagUTF8String, asn1.TagIA5String, asn1.TagT61String, asn1.TagBMPString, 28, asn1.TagNumericString}
	f.Fuzz(func(t *testing.T, data []byte) {
		var rdns [][]atv
		for len(data) >= 3 && len(rdns) < 4 {
			shape, oid, tag := data[0], data[1], data[2]
			data = data[3:]
			val, rest, _ := bytes.Cut(data, []byte{0})
			data = rest
			if len(val) > 64 {
				val = val[:64]
			}
			a := atv{oids[int(oid)%len(oids)], tags[int(tag)%len(tags)], val}
			switch a.tag {
			case asn1.TagBMPString:
				a.val = bmp(string(val))
			case 28:
				a.val = ucs4(string(val))
			}
			if shape%4 != 0 && len(rdns) > 0 && len(rdns[len(rdns)-1]) < 3 {
				rdns[len(rdns)-1] = append(rdns[len(rdns)-1], a) // multi-valued RDN
			} else {
				rdns = append(rdns, []atv{a})
			}
		}
		raw := name(rdns...)
		got, err := cacert.SubjectHash(raw)
		want, ok := opensslHash(t, certWithSubject(t, raw))
		if !ok {
			return
		}
		if err != nil {
			t.Fatalf("openssl hashes the name as %s, SubjectHash fails: %v", want, err)
		}
		if g := fmt.Sprintf("%08x", got); g != want {
			t.Fatalf("SubjectHash = %s, openssl x509 -hash = %s", g, want)
		}
	})
}
