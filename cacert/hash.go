package cacert

import (
	"bytes"
	"crypto/sha1"
	"encoding/asn1"
	"encoding/binary"
	"fmt"
	"sort"
	"unicode/utf8"
)

// SubjectHash returns OpenSSL's hash of a DER-encoded X.509 name (a certificate's
// RawSubject, a CRL's RawIssuer): the first four bytes, little-endian, of the SHA-1 of the
// name's canonical encoding. It is the value `openssl x509 -hash` prints and the stem of
// the "<hash>.N" links a CA directory is searched by.
//
// The canonical encoding is OpenSSL's: every string value of a type OpenSSL canonicalises
// (UTF8String, BMPString, UniversalString, PrintableString, T61String, IA5String,
// VisibleString) is converted to UTF-8, ASCII letters are lower-cased, leading and trailing
// whitespace is dropped and inner runs of whitespace become one space; it is re-encoded as
// a UTF8String. Other values are kept as they are. Each relative distinguished name is
// re-encoded as a DER SET (its members sorted), and the sets are concatenated without the
// outer SEQUENCE. A value OpenSSL would refuse to convert (invalid UTF-8, an odd-length
// BMPString, a surrogate code point) is an error.
func SubjectHash(rawName []byte) (uint32, error) {
	enc, err := canonicalName(rawName)
	if err != nil {
		return 0, err
	}
	sum := sha1.Sum(enc)
	return binary.LittleEndian.Uint32(sum[:4]), nil
}

// canonicalName returns OpenSSL's canonical encoding of the DER name der
// (x509_name_canon and i2d_name_canon in crypto/x509/x_name.c).
func canonicalName(der []byte) ([]byte, error) {
	var name asn1.RawValue
	rest, err := asn1.Unmarshal(der, &name)
	if err != nil {
		return nil, fmt.Errorf("cacert: parse name: %w", err)
	}
	// OpenSSL reads the name and its sets as SEQUENCE OF and SET OF templates, which do not
	// check the constructed bit (asn1_template_noexp_d2i): a primitive-form SEQUENCE or SET
	// is read like the constructed one. The attribute SEQUENCE is checked.
	if len(rest) != 0 || name.Class != asn1.ClassUniversal || name.Tag != asn1.TagSequence {
		return nil, fmt.Errorf("cacert: parse name: not a SEQUENCE")
	}
	var out []byte
	rdns := name.Bytes
	for len(rdns) > 0 {
		var set asn1.RawValue
		if rdns, err = asn1.Unmarshal(rdns, &set); err != nil {
			return nil, fmt.Errorf("cacert: parse name: %w", err)
		}
		if set.Class != asn1.ClassUniversal || set.Tag != asn1.TagSet {
			return nil, fmt.Errorf("cacert: parse name: relative distinguished name is not a SET")
		}
		var members [][]byte
		for atvs := set.Bytes; len(atvs) > 0; {
			var atv asn1.RawValue
			if atvs, err = asn1.Unmarshal(atvs, &atv); err != nil {
				return nil, fmt.Errorf("cacert: parse name: %w", err)
			}
			if atv.Class != asn1.ClassUniversal || atv.Tag != asn1.TagSequence || !atv.IsCompound {
				return nil, fmt.Errorf("cacert: parse name: attribute is not a SEQUENCE")
			}
			var oid, val asn1.RawValue
			r, err := asn1.Unmarshal(atv.Bytes, &oid)
			if err != nil {
				return nil, fmt.Errorf("cacert: parse name: %w", err)
			}
			if oid.Class != asn1.ClassUniversal || oid.Tag != asn1.TagOID || oid.IsCompound {
				return nil, fmt.Errorf("cacert: parse name: attribute type is not an OBJECT IDENTIFIER")
			}
			if r, err = asn1.Unmarshal(r, &val); err != nil {
				return nil, fmt.Errorf("cacert: parse name: %w", err)
			}
			if len(r) != 0 {
				return nil, fmt.Errorf("cacert: parse name: trailing data in attribute")
			}
			cv, err := canonicalValue(val)
			if err != nil {
				return nil, err
			}
			body := append(appendTLV(nil, 0x06, oid.Bytes), cv...)
			members = append(members, appendTLV(nil, 0x30, body))
		}
		if len(members) == 0 {
			continue // OpenSSL keeps no entry for an empty set, so it leaves no trace
		}
		// DER SET OF: members sorted by their encodings (OpenSSL's der_cmp).
		sort.Slice(members, func(i, j int) bool { return bytes.Compare(members[i], members[j]) < 0 })
		out = appendTLV(out, 0x31, bytes.Join(members, nil))
	}
	return out, nil
}

// canonicalValue returns the canonical encoding of one attribute value
// (asn1_string_canon in crypto/x509/x_name.c).
func canonicalValue(v asn1.RawValue) ([]byte, error) {
	if v.Class != asn1.ClassUniversal || v.IsCompound {
		return v.FullBytes, nil
	}
	var u []byte
	switch v.Tag {
	case asn1.TagUTF8String:
		if !utf8.Valid(v.Bytes) {
			return nil, fmt.Errorf("cacert: name value is not valid UTF-8")
		}
		u = v.Bytes
	case asn1.TagPrintableString, asn1.TagT61String, asn1.TagIA5String, 26: // 26: VisibleString
		// One byte per character, read as Latin-1.
		for _, b := range v.Bytes {
			u = utf8.AppendRune(u, rune(b))
		}
	case asn1.TagBMPString:
		if len(v.Bytes)%2 != 0 {
			return nil, fmt.Errorf("cacert: name value: BMPString of odd length")
		}
		for i := 0; i < len(v.Bytes); i += 2 {
			r := rune(binary.BigEndian.Uint16(v.Bytes[i:]))
			if !validRune(r) {
				return nil, fmt.Errorf("cacert: name value: BMPString holds invalid code point %#x", r)
			}
			u = utf8.AppendRune(u, r)
		}
	case 28: // UniversalString
		if len(v.Bytes)%4 != 0 {
			return nil, fmt.Errorf("cacert: name value: UniversalString length not a multiple of 4")
		}
		for i := 0; i < len(v.Bytes); i += 4 {
			c := binary.BigEndian.Uint32(v.Bytes[i:])
			if c > utf8.MaxRune || !validRune(rune(c)) {
				return nil, fmt.Errorf("cacert: name value: UniversalString holds invalid code point %#x", c)
			}
			u = utf8.AppendRune(u, rune(c))
		}
	default:
		return v.FullBytes, nil
	}
	return appendTLV(nil, asn1.TagUTF8String, canonicalText(u)), nil
}

// validRune reports whether OpenSSL accepts r when converting to UTF-8 (is_unicode_valid).
func validRune(r rune) bool {
	return r >= 0 && r <= utf8.MaxRune && (r < 0xD800 || r > 0xDFFF)
}

// isSpace is OpenSSL's ossl_isspace: ASCII space, \t, \n, \v, \f and \r.
func isSpace(b byte) bool {
	return b == ' ' || (b >= '\t' && b <= '\r')
}

// canonicalText drops leading and trailing whitespace, collapses inner runs of whitespace
// to one space and lower-cases ASCII letters; bytes outside ASCII are kept.
func canonicalText(s []byte) []byte {
	for len(s) > 0 && isSpace(s[0]) {
		s = s[1:]
	}
	for len(s) > 0 && isSpace(s[len(s)-1]) {
		s = s[:len(s)-1]
	}
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c >= 0x80:
			out = append(out, c)
			i++
		case isSpace(c):
			out = append(out, ' ')
			for i < len(s) && isSpace(s[i]) {
				i++
			}
		default:
			if c >= 'A' && c <= 'Z' {
				c += 'a' - 'A'
			}
			out = append(out, c)
			i++
		}
	}
	return out
}

// appendTLV appends a DER tag-length-value with a single-byte universal tag.
func appendTLV(dst []byte, tag byte, body []byte) []byte {
	dst = append(dst, tag)
	n := len(body)
	switch {
	case n < 0x80:
		dst = append(dst, byte(n))
	default:
		var lb []byte
		for m := n; m > 0; m >>= 8 {
			lb = append([]byte{byte(m)}, lb...)
		}
		dst = append(dst, 0x80|byte(len(lb)))
		dst = append(dst, lb...)
	}
	return append(dst, body...)
}
