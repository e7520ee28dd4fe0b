package cacert

import (
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"
)

// The checks in this file hold a PKCS#12 trust store to the DER structure the JDK reads
// before go-pkcs12 and crypto/x509 read it: both take some damaged stores that Java (and
// OpenSSL) refuse, and cacert must not rewrite a cacerts file Java cannot load as if it
// were sound.

// Object identifiers of RFC 7292 and PKCS #7 that checkPFX looks into.
var (
	oidData    = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 1}
	oidCertBag = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 12, 10, 1, 3}

	oidEncryptedData = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 6}
	oidPBES2         = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 5, 13}

	oidFriendlyName        = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 20}
	oidLocalKeyID          = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 21}
	oidJavaTrustedKeyUsage = asn1.ObjectIdentifier{2, 16, 840, 1, 113894, 746875, 1, 1}
)

// checkPFX refuses a PKCS#12 store whose unencrypted layers (RFC 7292, sections 4 and
// 4.2) do not have their DER structure, every element accounted for: the PFX, the
// authSafe's OCTET STRING, the AuthenticatedSafe's ContentInfos, and for those of type
// data their SafeBags, bag attributes and certificate bags. go-pkcs12 reads the authSafe's
// content as any ASN.1 value and ignores bytes after an explicitly tagged value, and so
// takes stores that the JDK ("DerValue.getOctetString, not an Octet String", "not enough
// content") and OpenSSL ("wrong tag") refuse. Encrypted contents are left to go-pkcs12.
func checkPFX(data []byte) error {
	err := walkPFX(data)
	if err != nil {
		return fmt.Errorf("read PKCS#12 trust store: %w: the file is damaged; Java would not load it either", err)
	}
	return nil
}

// walkPFX is checkPFX without the advice its error adds.
func walkPFX(data []byte) error {
	pfx, err := derSequence(data, "PFX")
	if err != nil {
		return err
	}
	if len(pfx) < 2 || len(pfx) > 3 || !isUniversal(pfx[0], asn1.TagInteger, false) {
		return errors.New("PFX is not a version, an authSafe and an optional macData")
	}
	if len(pfx) == 3 {
		// MacData: a DigestInfo, a salt and an iteration count (default 1).
		mac, err := derSequence(pfx[2].FullBytes, "MacData")
		if err != nil || len(mac) < 2 || len(mac) > 3 {
			return errors.New("MacData is not a digest, a salt and an iteration count")
		}
		if len(mac) == 3 {
			if err := checkIterations(mac[2], "MAC"); err != nil {
				return err
			}
		}
	}
	oid, content, err := contentInfo(pfx[1])
	if err != nil {
		return fmt.Errorf("authSafe: %w", err)
	}
	if !oid.Equal(oidData) || !isUniversal(content, asn1.TagOctetString, false) {
		return errors.New("authSafe content is not one OCTET STRING of type data")
	}
	safes, err := derSequence(content.Bytes, "AuthenticatedSafe")
	if err != nil {
		return err
	}
	for _, ci := range safes {
		oid, content, err := contentInfo(ci)
		if err != nil {
			return fmt.Errorf("AuthenticatedSafe: %w", err)
		}
		if oid.Equal(oidEncryptedData) {
			// Its SafeContents are go-pkcs12's to decrypt, but not with any work factor.
			if err := checkEncryptedData(content); err != nil {
				return err
			}
			continue
		}
		if !oid.Equal(oidData) {
			continue // go-pkcs12 refuses other types
		}
		if !isUniversal(content, asn1.TagOctetString, false) {
			return errors.New("AuthenticatedSafe holds data that is not one OCTET STRING")
		}
		bags, err := derSequence(content.Bytes, "SafeContents")
		if err != nil {
			return err
		}
		for _, bag := range bags {
			if err := checkSafeBag(bag); err != nil {
				return err
			}
		}
	}
	return nil
}

// maxIterations is the largest iteration count of a MAC or a password-based cipher in a
// PKCS#12 store that cacert derives keys for: the JDK's own limit (PKCS12KeyStore's
// MAX_ITERATION_COUNT), beyond which Java refuses the keystore. Without one, a few hundred
// bytes of cacerts declaring 2^31 iterations hold a conversion for an hour.
const maxIterations = 5_000_000

// checkIterations checks that v is an INTEGER from 1 to maxIterations.
func checkIterations(v asn1.RawValue, what string) error {
	var n *big.Int
	if !isUniversal(v, asn1.TagInteger, false) {
		return fmt.Errorf("%s iteration count is not an INTEGER", what)
	}
	if _, err := asn1.Unmarshal(v.FullBytes, &n); err != nil {
		return fmt.Errorf("%s iteration count: %w", what, err)
	}
	if n.Sign() <= 0 || n.Cmp(big.NewInt(maxIterations)) > 0 {
		return fmt.Errorf("%s iteration count %v is outside 1 to %d, the JDK's limit", what, n, maxIterations)
	}
	return nil
}

// checkEncryptedData checks the iteration counts of an EncryptedData's cipher: PKCS#12's
// password-based ciphers (RFC 7292, appendix C: a salt and a count) and PBES2 with PBKDF2
// (RFC 8018: a salt, a count and optional key length and PRF).
func checkEncryptedData(v asn1.RawValue) error {
	ed, err := derSequence(v.FullBytes, "EncryptedData")
	if err != nil || len(ed) < 2 {
		return errors.New("EncryptedData is not a version and an EncryptedContentInfo")
	}
	eci, err := derSequence(ed[1].FullBytes, "EncryptedContentInfo")
	if err != nil || len(eci) < 2 {
		return errors.New("EncryptedContentInfo is not a type and an algorithm")
	}
	alg, err := derSequence(eci[1].FullBytes, "AlgorithmIdentifier")
	if err != nil || len(alg) != 2 || !isUniversal(alg[0], asn1.TagOID, false) {
		return errors.New("the encryption algorithm is not an OID and its parameters")
	}
	params, err := derSequence(alg[1].FullBytes, "PBE parameters")
	if err != nil {
		return err
	}
	var oid asn1.ObjectIdentifier
	if _, err := asn1.Unmarshal(alg[0].FullBytes, &oid); err != nil {
		return fmt.Errorf("encryption algorithm: %w", err)
	}
	if oid.Equal(oidPBES2) {
		if len(params) != 2 {
			return errors.New("PBES2 parameters are not a key derivation and a cipher")
		}
		kdf, err := derSequence(params[0].FullBytes, "PBES2 key derivation")
		if err != nil || len(kdf) != 2 {
			return errors.New("PBES2 key derivation is not an OID and its parameters")
		}
		if params, err = derSequence(kdf[1].FullBytes, "PBKDF2 parameters"); err != nil {
			return err
		}
	}
	if len(params) < 2 {
		return errors.New("the encryption parameters are not a salt and an iteration count")
	}
	return checkIterations(params[1], "encryption")
}

// contentInfo returns the type and content of a ContentInfo: an OID and an optional [0]
// holding exactly one element.
func contentInfo(v asn1.RawValue) (asn1.ObjectIdentifier, asn1.RawValue, error) {
	e, err := derSequence(v.FullBytes, "ContentInfo")
	if err != nil {
		return nil, asn1.RawValue{}, err
	}
	var oid asn1.ObjectIdentifier
	if len(e) < 1 || len(e) > 2 || !isUniversal(e[0], asn1.TagOID, false) {
		return nil, asn1.RawValue{}, errors.New("ContentInfo is not an OID and an optional content")
	}
	if _, err := asn1.Unmarshal(e[0].FullBytes, &oid); err != nil {
		return nil, asn1.RawValue{}, fmt.Errorf("ContentInfo: %w", err)
	}
	if len(e) == 1 {
		return oid, asn1.RawValue{}, nil
	}
	content, err := explicit0(e[1], "ContentInfo")
	return oid, content, err
}

// checkSafeBag checks a SafeBag: an OID, a [0] holding one value, optional attributes;
// a certificate bag's value is an OID and a [0] holding one OCTET STRING.
func checkSafeBag(v asn1.RawValue) error {
	e, err := derSequence(v.FullBytes, "SafeBag")
	if err != nil {
		return err
	}
	var oid asn1.ObjectIdentifier
	if len(e) < 2 || len(e) > 3 || !isUniversal(e[0], asn1.TagOID, false) {
		return errors.New("SafeBag is not an OID, a value and optional attributes")
	}
	if _, err := asn1.Unmarshal(e[0].FullBytes, &oid); err != nil {
		return fmt.Errorf("SafeBag: %w", err)
	}
	value, err := explicit0(e[1], "SafeBag")
	if err != nil {
		return err
	}
	if len(e) == 3 {
		if !isUniversal(e[2], asn1.TagSet, true) {
			return errors.New("SafeBag attributes are not a SET")
		}
		attrs, err := derElements(e[2].Bytes)
		if err != nil {
			return fmt.Errorf("SafeBag attributes: %w", err)
		}
		for _, a := range attrs {
			if err := checkBagAttribute(a); err != nil {
				return err
			}
		}
	}
	if !oid.Equal(oidCertBag) {
		return nil
	}
	cert, err := derSequence(value.FullBytes, "CertBag")
	if err != nil {
		return err
	}
	if len(cert) != 2 || !isUniversal(cert[0], asn1.TagOID, false) {
		return errors.New("CertBag is not an OID and a value")
	}
	if c, err := explicit0(cert[1], "CertBag"); err != nil || !isUniversal(c, asn1.TagOctetString, false) {
		return errors.New("CertBag value is not one OCTET STRING")
	}
	return nil
}

// checkBagAttribute checks a SafeBag attribute: an OID and a SET of values, which for the
// attributes the JDK reads have their types: a friendlyName is a BMPString (two bytes a
// character), a localKeyID an OCTET STRING, Java's trusted key usage an OID.
func checkBagAttribute(a asn1.RawValue) error {
	f, err := derSequence(a.FullBytes, "PKCS12Attribute")
	if err != nil || len(f) != 2 || !isUniversal(f[0], asn1.TagOID, false) || !isUniversal(f[1], asn1.TagSet, true) {
		return errors.New("a SafeBag attribute is not an OID and a SET of values")
	}
	var oid asn1.ObjectIdentifier
	if _, err := asn1.Unmarshal(f[0].FullBytes, &oid); err != nil {
		return fmt.Errorf("SafeBag attribute: %w", err)
	}
	values, err := derElements(f[1].Bytes)
	if err != nil || len(values) == 0 {
		return fmt.Errorf("SafeBag attribute %v has no values", oid)
	}
	for _, v := range values {
		var ok bool
		switch {
		case oid.Equal(oidFriendlyName):
			ok = isUniversal(v, asn1.TagBMPString, false) && len(v.Bytes)%2 == 0
		case oid.Equal(oidLocalKeyID):
			ok = isUniversal(v, asn1.TagOctetString, false)
		case oid.Equal(oidJavaTrustedKeyUsage):
			var usage asn1.ObjectIdentifier
			_, err := asn1.Unmarshal(v.FullBytes, &usage)
			ok = err == nil // a whole OID: the JDK refuses one whose last byte says more follow
		default:
			ok = true
		}
		if !ok {
			return fmt.Errorf("SafeBag attribute %v has a value of the wrong type", oid)
		}
	}
	return nil
}

// explicit0 returns the one element a constructed [0] holds.
func explicit0(v asn1.RawValue, what string) (asn1.RawValue, error) {
	if v.Class != asn1.ClassContextSpecific || v.Tag != 0 || !v.IsCompound {
		return asn1.RawValue{}, fmt.Errorf("%s has no [0] where its value belongs", what)
	}
	e, err := derElements(v.Bytes)
	if err != nil || len(e) != 1 {
		return asn1.RawValue{}, fmt.Errorf("%s's [0] does not hold exactly one element", what)
	}
	return e[0], nil
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
	if len(cert) != 3 || !isUniversal(cert[2], asn1.TagBitString, false) || !bitString(cert[2].Bytes) {
		return errors.New("the certificate is not a TBSCertificate, an AlgorithmIdentifier and a BIT STRING")
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
		return errors.New("the validity is not two times")
	}
	for _, t := range validity {
		if !isUniversal(t, asn1.TagUTCTime, false) && !isUniversal(t, asn1.TagGeneralizedTime, false) {
			return errors.New("the validity is not two times")
		}
	}
	spki, err := derSequence(tbs[5].FullBytes, "SubjectPublicKeyInfo")
	if err != nil || len(spki) != 2 || !isUniversal(spki[1], asn1.TagBitString, false) || !bitString(spki[1].Bytes) {
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
		if f.Tag < 3 && !bitString(f.Bytes) {
			return fmt.Errorf("TBSCertificate's unique identifier [%d] is not a BIT STRING", f.Tag)
		}
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
			return errors.New("a name holds something other than a SET")
		}
		atvs, err := derElements(rdn.Bytes)
		if err != nil {
			return fmt.Errorf("a name: %w", err)
		}
		for _, atv := range atvs {
			if e, err := derSequence(atv.FullBytes, "AttributeTypeAndValue"); err != nil || len(e) != 2 || !isUniversal(e[0], asn1.TagOID, false) {
				return errors.New("a name holds an attribute that is not an OID and a value")
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

// bitString reports whether b is the content of a BIT STRING: a count of unused bits,
// 0 to 7 and 0 when no bits follow, then the bits (whether the unused ones are zero is
// not checked: the JDK does not check it either).
func bitString(b []byte) bool {
	return len(b) > 0 && b[0] <= 7 && (len(b) > 1 || b[0] == 0)
}

// isUniversal reports whether v has the universal tag and form given.
func isUniversal(v asn1.RawValue, tag int, compound bool) bool {
	return v.Class == asn1.ClassUniversal && v.Tag == tag && v.IsCompound == compound
}
