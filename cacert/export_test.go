package cacert

import "github.com/img2ext4/img2ext4/layerapply"

// Rehash runs this package's port of openssl rehash on dir, for tests.
func Rehash(fsys layerapply.RootFS, dir string) (created, removed int, warnings []string, err error) {
	ops, _, warnings, err := planRehash(fsys, dir)
	if err != nil {
		return 0, 0, nil, err
	}
	created, removed, err = applyRehash(fsys, dir, ops)
	return created, removed, warnings, err
}

// AddJKS and AddPKCS12 add certificates to a Java keystore's bytes, for tests.
var (
	AddJKS    = addJKS
	AddPKCS12 = addPKCS12
)

// CheckEncryptedData checks the iteration counts of a PKCS#12 EncryptedData, for tests.
var CheckEncryptedData = checkEncryptedData
