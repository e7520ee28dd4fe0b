package img2ext4

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"

	"github.com/img2ext4/img2ext4/cacert"
	"github.com/img2ext4/img2ext4/layerapply"
)

// WithCACerts adds the CA certificates certs to every trust store of the image, once, after
// the last layer and before the output is finished, the same for every output format:
// PEM bundles, the distributions' anchor directories, OpenSSL CA directories with their
// hash links, Python certifi bundles and Java keystores (see package cacert for the list).
// Certificates are given parsed; [cacert.ParsePEM] reads PEM files. Each must be a CA
// certificate, checked before anything is fetched. A certificate the image already trusts
// is not added again. What changed is in [Result.CACerts]. The step runs among the
// [WithMutate] functions, at the place of the first WithCACerts option; repeated calls add
// to its list. The default is none.
func WithCACerts(certs ...*x509.Certificate) Option {
	return func(o *options) error {
		for _, c := range certs {
			if c == nil {
				return errors.New("WithCACerts: nil certificate")
			}
			if err := cacert.CheckCA(c); err != nil {
				return fmt.Errorf("CA certificate %s: %w", c.Subject, err)
			}
		}
		if len(o.caCerts) == 0 && len(certs) > 0 {
			// One step for all WithCACerts options, where the first one stands among the
			// mutations; it reads the certificates and strictness when it runs.
			o.mutate = append(o.mutate, o.installCACerts)
		}
		o.caCerts = append(o.caCerts, certs...)
		return nil
	}
}

// WithCACertStrict makes a CA certificate given to [WithCACerts] that has expired or is not
// valid yet, and a Java keystore of the image that cannot be opened with the default
// password, fail the conversion instead of adding a warning to [Result.CACerts]. The
// default is false.
func WithCACertStrict(strict bool) Option {
	return func(o *options) error { o.caStrict = strict; return nil }
}

// installCACerts is the mutation step of WithCACerts; its report goes to Result.CACerts.
func (o *options) installCACerts(ctx context.Context, fsys layerapply.RootFS) error {
	rep, err := cacert.Install(ctx, fsys, o.caCerts, cacert.WithStrict(o.caStrict))
	if err != nil {
		return fmt.Errorf("add CA certificates: %w", err)
	}
	o.caReport = rep
	return nil
}
