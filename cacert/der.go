package cacert

import (
	"encoding/asn1"
	"errors"
	"fmt"
)

// The checks in this file hold a PKCS#12 trust store to the DER structure the JDK reads
// before go-pkcs12 and crypto/x509 read it: both take some damaged stores that Java (and
// OpenSSL) refuse, and cacert must not rewrite a cacerts file Java cannot load as if it
// were sound.

// checkAuthSafe refuses a PKCS#12 store whose authSafe does not hold its content as an
// OCTET STRING (RFC 7292, section 4: ContentInfo of type data). go-pkcs12 reads that content
// as any ASN.1 value and so takes stores that the JDK ("DerValue.getOctetString, not an
// Octet String") and OpenSSL ("wrong tag") refuse; cacert must not rewrite a cacerts file
// that Java itself cannot load.
func checkAuthSafe(data []byte) error {
	var pfx struct {
		Version  int
		AuthSafe struct {
			ContentType asn1.ObjectIdentifier
			Content     asn1.RawValue `asn1:"optional"` // [0] EXPLICIT, checked below
		}
		MacData asn1.RawValue `asn1:"optional"`
	}
	if _, err := asn1.Unmarshal(data, &pfx); err != nil {
		return fmt.Errorf("read PKCS#12 trust store: not a PFX structure: %w", err)
	}
	var c asn1.RawValue
	w := pfx.AuthSafe.Content
	rest, err := asn1.Unmarshal(w.Bytes, &c)
	if w.Class != asn1.ClassContextSpecific || w.Tag != 0 || !w.IsCompound || err != nil || len(rest) != 0 ||
		c.Class != asn1.ClassUniversal || c.Tag != asn1.TagOctetString || c.IsCompound {
		return fmt.Errorf("read PKCS#12 trust store: its authSafe content is not one OCTET STRING: the file is damaged; Java would not load it either")
	}
	return nil
}

// checkCertificate refuses a certificate whose DER does not have the structure of RFC 5280,
// section 4.1, every element accounted for: crypto/x509 ignores bytes after an
// AlgorithmIdentifier's parameters or a public key, which the JDK refuses ("Invalid
// AlgorithmIdentifier: extra data", "excess subject key") together with the whole keystore,
// as OpenSSL does. Extension values are not looked into: the JDK keeps those it cannot
// parse.
func checkCertificate(der []byte) error {
	cert, err := derSequence(der, "Certificate")
	if err != nil {
		return err
	}
	if len(cert) != 3 || !isUniversal(cert[2], asn1.TagBitString, false) {
		return errors.New("Certificate is not a TBSCertificate, an AlgorithmIdentifier and a BIT STRING")
	}
	if err := checkAlgorithm(cert[1]); err != nil {
		return err
	}
	tbs, err := derSequence(cert[0].FullBytes, "TBSCertificate")
	if err != nil {
		return err
	}
	if len(tbs) > 0 && tbs[0].Class == asn1.ClassContextSpecific && tbs[0].Tag == 0 {
		if v, err := derElements(tbs[0].Bytes); err != nil || len(v) != 1 || !isUniversal(v[0], asn1.TagInteger, false) {
			return errors.New("TBSCertificate's version is not one INTEGER")
		}
		tbs = tbs[1:]
	}
	if len(tbs) < 6 || !isUniversal(tbs[0], asn1.TagInteger, false) {
		return errors.New("TBSCertificate lacks its serialNumber, signature, issuer, validity, subject or subjectPublicKeyInfo")
	}
	if err := checkAlgorithm(tbs[1]); err != nil {
		return err
	}
	for _, name := range []asn1.RawValue{tbs[2], tbs[4]} {
		if err := checkName(name); err != nil {
			return err
		}
	}
	validity, err := derSequence(tbs[3].FullBytes, "Validity")
	if err != nil || len(validity) != 2 {
		return errors.New("Validity is not two times")
	}
	for _, t := range validity {
		if !isUniversal(t, asn1.TagUTCTime, false) && !isUniversal(t, asn1.TagGeneralizedTime, false) {
			return errors.New("Validity is not two times")
		}
	}
	spki, err := derSequence(tbs[5].FullBytes, "SubjectPublicKeyInfo")
	if err != nil || len(spki) != 2 || !isUniversal(spki[1], asn1.TagBitString, false) {
		return errors.New("SubjectPublicKeyInfo is not an AlgorithmIdentifier and a BIT STRING")
	}
	if err := checkAlgorithm(spki[0]); err != nil {
		return err
	}
	// The optional fields: [1] issuerUniqueID, [2] subjectUniqueID, [3] extensions. The JDK
	// ignores what follows the extensions, and so does this check.
	next := 1
	for _, f := range tbs[6:] {
		if next > 3 {
			break
		}
		if f.Class != asn1.ClassContextSpecific || f.Tag < next || f.Tag > 3 || f.IsCompound != (f.Tag == 3) {
			return fmt.Errorf("TBSCertificate has an unexpected element (class %d, tag %d) after subjectPublicKeyInfo", f.Class, f.Tag)
		}
		next = f.Tag + 1
		if f.Tag == 3 {
			if err := checkExtensions(f.Bytes); err != nil {
				return err
			}
		}
	}
	return nil
}

// checkAlgorithm checks an AlgorithmIdentifier: an OID and at most one parameters element.
func checkAlgorithm(v asn1.RawValue) error {
	e, err := derSequence(v.FullBytes, "AlgorithmIdentifier")
	if err != nil || len(e) < 1 || len(e) > 2 || !isUniversal(e[0], asn1.TagOID, false) {
		return fmt.Errorf("AlgorithmIdentifier %x is not an OID and at most one parameters element", v.FullBytes)
	}
	return nil
}

// checkName checks a Name: a SEQUENCE of SETs of (OID, value) SEQUENCEs.
func checkName(v asn1.RawValue) error {
	rdns, err := derSequence(v.FullBytes, "Name")
	if err != nil {
		return err
	}
	for _, rdn := range rdns {
		if !isUniversal(rdn, asn1.TagSet, true) {
			return errors.New("Name holds something other than a SET")
		}
		atvs, err := derElements(rdn.Bytes)
		if err != nil {
			return fmt.Errorf("Name: %w", err)
		}
		for _, atv := range atvs {
			if e, err := derSequence(atv.FullBytes, "AttributeTypeAndValue"); err != nil || len(e) != 2 || !isUniversal(e[0], asn1.TagOID, false) {
				return errors.New("Name holds an attribute that is not an OID and a value")
			}
		}
	}
	return nil
}

// checkExtensions checks the contents of the [3] of a TBSCertificate: one SEQUENCE of
// (OID, optional BOOLEAN, OCTET STRING) SEQUENCEs.
func checkExtensions(b []byte) error {
	outer, err := derElements(b)
	if err != nil || len(outer) != 1 {
		return errors.New("extensions are not one SEQUENCE")
	}
	exts, err := derSequence(outer[0].FullBytes, "Extensions")
	if err != nil {
		return err
	}
	for _, x := range exts {
		e, err := derSequence(x.FullBytes, "Extension")
		if err != nil || len(e) < 2 || len(e) > 3 || !isUniversal(e[0], asn1.TagOID, false) ||
			!isUniversal(e[len(e)-1], asn1.TagOctetString, false) || len(e) == 3 && !isUniversal(e[1], asn1.TagBoolean, false) {
			return errors.New("an extension is not an OID, an optional BOOLEAN and an OCTET STRING")
		}
	}
	return nil
}

// derSequence parses b as exactly one SEQUENCE and returns its elements.
func derSequence(b []byte, what string) ([]asn1.RawValue, error) {
	var v asn1.RawValue
	rest, err := asn1.Unmarshal(b, &v)
	if err != nil || len(rest) != 0 || !isUniversal(v, asn1.TagSequence, true) {
		return nil, fmt.Errorf("%s is not one DER SEQUENCE", what)
	}
	e, err := derElements(v.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return e, nil
}

// derElements parses b as a run of DER elements, to its last byte.
func derElements(b []byte) ([]asn1.RawValue, error) {
	var e []asn1.RawValue
	for len(b) > 0 {
		var v asn1.RawValue
		rest, err := asn1.Unmarshal(b, &v)
		if err != nil {
			return nil, err
		}
		e, b = append(e, v), rest
	}
	return e, nil
}

// isUniversal reports whether v has the universal tag and form given.
func isUniversal(v asn1.RawValue, tag int, compound bool) bool {
	return v.Class == asn1.ClassUniversal && v.Tag == tag && v.IsCompound == compound
}
