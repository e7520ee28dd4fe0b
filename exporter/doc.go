// Package exporter reads images that package ocifetch cannot read by itself, by running
// an exporter program that writes them into a form it can: the optional fallback
// exporters.
//
// [Image] resolves a reference in one of four [Mode]s:
//
//   - [Native] runs no program: the reference goes to [ocifetch.Image] as it is.
//   - [Skopeo] runs "skopeo copy" from the reference into an OCI layout in a temporary
//     directory and reads that natively. It serves every transport skopeo knows, among
//     them "containers-storage:[STORE-SPEC]IMAGE" (podman's and CRI-O's image store),
//     "dir:", "ostree:", "sif:" and "tarball:"; a registry reference is read as skopeo's
//     "docker://", over plain HTTP for loopback hosts and "http://" references as ocifetch
//     does. Credentials given with [ocifetch.WithBasicAuth] reach skopeo in an auth file
//     (--src-authfile) of mode 0600 in a private temporary directory, removed as soon as
//     skopeo exits, never on its command line; without them skopeo finds registry
//     credentials by its own rules (other ocifetch keychains are not passed on).
//   - [Docker] runs "docker save" for a "docker-daemon:IMAGE" reference into a temporary
//     archive and reads that natively: for engines the docker CLI reaches when the API
//     socket ([ocifetch.WithEngineHost], DOCKER_HOST) does not answer, as through a
//     docker context.
//   - [Auto] reads natively whenever ocifetch can, and falls back only for what it
//     cannot: a transport it does not know goes through skopeo, and a "docker-daemon:"
//     reference whose engine socket does not answer through "docker save" when the docker
//     CLI is installed.
//
// An exporter only fetches the source image: the layers are merged, the root filesystem
// changed (added files, CA certificates) and the output written by the caller, once,
// whichever exporter fetched. A missing program gives an error naming the Debian package
// that provides it ([ErrMissingProgram]). The platform ([ocifetch.WithPlatform]), the
// temporary directory ([ocifetch.WithTempDir]) and the engine endpoint are taken from the
// ocifetch options given to [Image], so that the program reads what ocifetch would.
//
// This is the only package of the module that runs programs.
package exporter
