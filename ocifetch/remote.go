package ocifetch

import (
	"context"
	"fmt"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// Remote parses ref, which must name a registry repository (with an optional tag or
// digest), and returns the options that make go-containerregistry's [remote] package
// reach that registry the way [Image] does: plain HTTP only for loopback hosts, "http://"
// references or [WithInsecure]; the registry CAs of [WithRegistryCA]; the retry policy of
// [WithRetries] and [WithRetryMaxTime] (remote's own retries are turned off, so a failed
// request is not retried twice over); the user agent; and the credentials of
// [WithBasicAuth], [WithKeychain] or the default keychain. The options carry ctx. Local
// transports ("oci:", archives, paths) are refused: they have no registry.
func Remote(ctx context.Context, ref string, opts ...Option) (name.Reference, []remote.Option, error) {
	o, err := makeOptions(opts)
	if err != nil {
		return nil, nil, err
	}
	r, err := parseReference(ref)
	if err != nil {
		return nil, nil, err
	}
	if r.transport != transportRegistry {
		return nil, nil, fmt.Errorf("ocifetch: %q is a local %s image, not a registry reference", ref, r.transport)
	}
	nref := r.ref
	if o.insecure && r.scheme == schemeAuto {
		if nref, err = name.ParseReference(nref.String(), name.Insecure); err != nil {
			return nil, nil, fmt.Errorf("ocifetch: parse reference %q: %w", ref, err)
		}
	}
	host := nref.Context().RegistryStr()
	ropts := []remote.Option{
		remote.WithContext(ctx),
		remote.WithTransport(registryTransport(r, host, o)),
		remote.WithRetryBackoff(remote.Backoff{Duration: 1, Factor: 1, Steps: 1}),
		remote.WithUserAgent(o.userAgent),
	}
	switch {
	case o.basicSet:
		ropts = append(ropts, remote.WithAuth(&authn.Basic{Username: o.user, Password: o.pass}))
	case o.keychain != nil:
		ropts = append(ropts, remote.WithAuthFromKeychain(o.keychain))
	default:
		ropts = append(ropts, remote.WithAuthFromKeychain(DefaultKeychain()))
	}
	return nref, ropts, nil
}
