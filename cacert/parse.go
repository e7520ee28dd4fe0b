package cacert

import (
	"bytes"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"time"
)

// ErrNotCA marks a certificate that cannot act as a certificate authority: its basic
// constraints do not say CA:TRUE, or its key usage leaves out certificate signing.
var ErrNotCA = errors.New("cacert: not a CA certificate")

// ErrInvalidPEM marks input that holds no PEM certificate, a damaged PEM block, or a PEM
// block that is not a certificate.
var ErrInvalidPEM = errors.New("cacert: invalid PEM")

// ErrValidity marks a certificate that has expired or is not valid yet, when
// [WithStrict] makes that an error.
var ErrValidity = errors.New("cacert: certificate outside its validity period")

// ParsePEM parses data, one or more PEM "CERTIFICATE" blocks (text between blocks is
// ignored; "TRUSTED CERTIFICATE" blocks are read for their certificate), and checks that
// each is a CA certificate. A certificate given twice is returned once. It returns an
// error wrapping [ErrInvalidPEM] for input with no certificate, a damaged block or a block
// of another type (a private key, say), and one wrapping [ErrNotCA] for a certificate
// without basic constraints CA:TRUE or whose key usage leaves out certificate signing.
// Validity dates are not checked here; [Install] does that.
func ParsePEM(data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	seen := map[string]bool{}
	rest := data
	for n := 1; ; n++ {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		var der []byte
		switch b.Type {
		case "CERTIFICATE":
			der = b.Bytes
		case "TRUSTED CERTIFICATE":
			var err error
			if der, err = splitTrusted(b.Bytes); err != nil {
				return nil, fmt.Errorf("%w: block %d: %v", ErrInvalidPEM, n, err)
			}
		default:
			return nil, fmt.Errorf("%w: block %d is %q, not a CERTIFICATE", ErrInvalidPEM, n, b.Type)
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("%w: block %d: %v", ErrInvalidPEM, n, err)
		}
		if err := checkCA(c); err != nil {
			return nil, fmt.Errorf("block %d (%s): %w", n, c.Subject, err)
		}
		if seen[string(c.Raw)] {
			continue
		}
		seen[string(c.Raw)] = true
		certs = append(certs, c)
	}
	if bytes.Contains(rest, []byte("-----BEGIN")) {
		return nil, fmt.Errorf("%w: a PEM block is damaged or cut short", ErrInvalidPEM)
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("%w: no PEM certificate found", ErrInvalidPEM)
	}
	return certs, nil
}

// CheckCA returns an error wrapping [ErrNotCA] unless c may sign certificates: its basic
// constraints say CA:TRUE, and its key usage, if any, includes certificate signing.
func CheckCA(c *x509.Certificate) error {
	return checkCA(c)
}

// checkCA tells whether c may sign certificates.
func checkCA(c *x509.Certificate) error {
	if !c.BasicConstraintsValid || !c.IsCA {
		return fmt.Errorf("%w: basic constraints do not say CA:TRUE (is this the server's own certificate rather than its CA?)", ErrNotCA)
	}
	if c.KeyUsage != 0 && c.KeyUsage&x509.KeyUsageCertSign == 0 {
		return fmt.Errorf("%w: key usage does not include certificate signing", ErrNotCA)
	}
	return nil
}

// checkValidity returns a message when c is expired or not valid yet at now.
func checkValidity(c *x509.Certificate, now time.Time) string {
	switch {
	case now.After(c.NotAfter):
		return fmt.Sprintf("CA certificate %q expired on %s", c.Subject.String(), c.NotAfter.UTC().Format(time.DateOnly))
	case now.Before(c.NotBefore):
		return fmt.Sprintf("CA certificate %q is not valid before %s", c.Subject.String(), c.NotBefore.UTC().Format(time.DateOnly))
	}
	return ""
}

// splitTrusted returns the certificate at the start of an OpenSSL "TRUSTED CERTIFICATE"
// body, which is a DER certificate followed by its trust settings (X509_CERT_AUX).
func splitTrusted(body []byte) ([]byte, error) {
	var raw asn1.RawValue
	if _, err := asn1.Unmarshal(body, &raw); err != nil {
		return nil, err
	}
	return raw.FullBytes, nil
}

// rawSubject returns the DER subject name of the DER certificate der, walking only the
// outer structure (so a certificate Go's parser is strict about still hashes as OpenSSL
// would).
func rawSubject(der []byte) ([]byte, error) {
	return tbsField(der, 5)
}

// tbsField returns the DER of field i of the TBSCertificate in der, counting the version
// as field 0 whether or not it is present: 1 serial, 2 signature, 3 issuer, 4 validity,
// 5 subject.
func tbsField(der []byte, i int) ([]byte, error) {
	fields, err := tbsFields(der)
	if err != nil {
		return nil, err
	}
	if len(fields) > 0 && len(fields[0]) > 0 && fields[0][0] != 0xa0 {
		fields = append([][]byte{nil}, fields...) // no version
	}
	if len(fields) <= i {
		return nil, errors.New("truncated certificate")
	}
	return fields[i], nil
}

// tbsFields returns the DER of each element of the first element (the to-be-signed part)
// of the signed DER structure der.
func tbsFields(der []byte) ([][]byte, error) {
	var outer, tbs asn1.RawValue
	if _, err := asn1.Unmarshal(der, &outer); err != nil {
		return nil, err
	}
	if _, err := asn1.Unmarshal(outer.Bytes, &tbs); err != nil {
		return nil, err
	}
	var fields [][]byte
	for rest := tbs.Bytes; len(rest) > 0; {
		var v asn1.RawValue
		var err error
		if rest, err = asn1.Unmarshal(rest, &v); err != nil {
			return nil, err
		}
		fields = append(fields, v.FullBytes)
	}
	return fields, nil
}
