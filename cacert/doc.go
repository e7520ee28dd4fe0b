// Package cacert adds CA certificates to every trust store of a container image's root
// filesystem, through a [layerapply.RootFS], so it works the same for every output format and
// knows nothing of ext4, tar or registries.
//
// [ParsePEM] reads the certificates and refuses anything that is not a CA certificate;
// [Install] puts them into the image and returns a [Report] of what it changed. It finds
// and edits, when present:
//
//   - PEM bundles: /etc/ssl/certs/ca-certificates.crt (Debian, Ubuntu, distroless, Alpine),
//     /etc/ssl/cert.pem (Alpine), /etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem and its
//     links /etc/pki/tls/certs/ca-bundle.crt and /etc/pki/tls/cert.pem (Fedora, RHEL,
//     CentOS, Amazon Linux), /etc/pki/ca-trust/extracted/openssl/ca-bundle.trust.crt
//     ("TRUSTED CERTIFICATE" blocks; added ones are trusted for every purpose), and
//     /var/lib/ca-certificates/ca-bundle.pem with its link /etc/ssl/ca-bundle.pem
//     (openSUSE, SLES);
//   - anchor directories, so the distribution's own update tool keeps the CA when it
//     regenerates the bundles: /usr/local/share/ca-certificates,
//     /etc/pki/ca-trust/source/anchors and /etc/pki/trust/anchors;
//   - OpenSSL CA directories (/etc/ssl/certs, /etc/pki/tls/certs,
//     /etc/pki/ca-trust/extracted/pem/directory-hash): a file per CA and the
//     "<subject-hash>.N" links, made exactly as `openssl rehash` makes them ([SubjectHash]
//     is OpenSSL's name hash), so -CApath and SSL_CERT_DIR lookups find the CA;
//   - Python certifi bundles (any .../certifi/cacert.pem, pip's vendored copy included),
//     which requests uses instead of the system store;
//   - Java keystores: /etc/ssl/certs/java/cacerts, /etc/pki/ca-trust/extracted/java/cacerts,
//     /var/lib/ca-certificates/java-cacerts and any JDK's lib/security/cacerts, JKS (with
//     github.com/pavlo-v-chernykh/keystore-go) or PKCS#12 (with
//     software.sslmate.com/src/go-pkcs12), password "changeit" unless [WithJavaPassword]
//     says otherwise.
//
// An image with no bundle at all gets /etc/ssl/certs/ca-certificates.crt. Every path is
// resolved inside the image root: a store reached through links (absolute ones included)
// is edited once, at its real path, and nothing on the host is read or written. Install is
// idempotent by certificate (DER): a store that holds the CA already is left alone. Edited
// files keep their mode, owner and times; the output depends only on the input.
//
// Runtimes that read none of these stores need an environment variable: Node.js bundles
// its own CAs and reads NODE_EXTRA_CA_CERTS; Go, OpenSSL-based tools and Python's ssl module
// honour SSL_CERT_FILE and SSL_CERT_DIR, which matter only when a program looks elsewhere
// than the system paths above. The root package writes these hints into --config-out.
//
// Install refuses (with an error) a certificate that is not a CA ([ErrNotCA]); one that
// has expired or is not valid yet is a warning in the report, or an error under
// [WithStrict] ([ErrValidity]). A Java keystore that cannot be read with the password is
// skipped with a warning (an error under WithStrict). JCEKS keystores are not edited.
// Aliases of existing entries in PKCS#12 stores are not kept (go-pkcs12 does not return
// them); they become the certificates' subjects.
package cacert
