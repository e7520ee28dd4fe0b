package cacert_test

import (
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"

	"github.com/img2ext4/img2ext4/cacert"
)

// The name of the link OpenSSL looks a CA up by in a CA directory.
func ExampleSubjectHash() {
	name, _ := asn1.Marshal(pkix.Name{Organization: []string{"Example Corp"}, CommonName: "Example Corp Root CA"}.ToRDNSequence())
	h, err := cacert.SubjectHash(name)
	if err != nil {
		panic(err)
	}
	fmt.Printf("%08x.0\n", h)
	// Output: 89e5d190.0
}
