package img2ext4

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"sync"

	"github.com/img2ext4/img2ext4/exporter"
	"github.com/img2ext4/img2ext4/ocifetch"
	"github.com/img2ext4/img2ext4/store"
)

// ErrNotKeyable reports a conversion whose output the store cannot key: one that runs
// [WithMutate] functions, whose effect no input describes.
var ErrNotKeyable = errors.New("img2ext4: a conversion with mutation functions cannot be keyed for the store")

// StoreKey resolves ref as cheaply as its transport allows (no request for a registry
// reference written with a digest, one manifest request for a tag; see [ocifetch.Resolve])
// and returns the [store.Key] of converting it with opts, with the [store.Inputs] it is
// computed from: the resolved digest, the platform, the format and every option that
// decides the output's bytes, the content digests of the files [WithAdd] and the
// certificates [WithCACerts] bring in, and this module's version. Options that do not
// change the bytes (progress, logging, temporary directory, parallel jobs, retries) are
// not part of it. A conversion with [WithMutate] functions cannot be keyed:
// [ErrNotKeyable].
//
// The same inputs give the same key in any process on any host, so the key also names the
// artifact wherever else it is kept.
func StoreKey(ctx context.Context, ref string, opts ...Option) (store.Key, store.Inputs, error) {
	o, err := makeOptions(opts)
	if err != nil {
		return "", store.Inputs{}, err
	}
	in, _, err := o.storeInputs(ctx, ref)
	if err != nil {
		return "", store.Inputs{}, err
	}
	return in.Key(), in, nil
}

// storeInputs resolves ref and lists the inputs of converting it with o; it also returns
// what the reference resolved to, so a conversion can use the pinned reference.
func (o *options) storeInputs(ctx context.Context, ref string) (store.Inputs, *ocifetch.Resolved, error) {
	steps := 0
	if len(o.caCerts) > 0 {
		steps = 1
	}
	if len(o.mutate) > steps {
		return store.Inputs{}, nil, ErrNotKeyable
	}
	r, err := ocifetch.Resolve(ctx, ref, o.fetch...)
	if errors.Is(err, ocifetch.ErrUnsupportedTransport) {
		return store.Inputs{}, nil, fmt.Errorf("key %s for the store: only sources read without a fallback exporter can be keyed: %w", ref, err)
	}
	if err != nil {
		return store.Inputs{}, nil, err
	}
	in := store.Inputs{
		Source:   r.Digest.String(),
		Platform: r.Platform.String(),
		Format:   string(o.format),
		Options:  map[string]string{},
		Files:    map[string]string{},
		Version:  toolVersion(),
	}
	if o.exporter != exporter.Native && o.exporter != exporter.Auto {
		// A program may rewrite the manifest it copies, and the bytes depend on its digest.
		in.Options["exporter"] = string(o.exporter)
	}
	if r.AllowPlatformMismatch {
		in.Options["allow-platform-mismatch"] = "true"
	}
	if o.format == FormatExt4 {
		in.Options["ext4"] = jsonText(o.ext4)
	}
	if o.verity != nil {
		v := map[string]string{"separate": strconv.FormatBool(o.verity.Out != "")}
		if o.verity.Salt != nil {
			v["salt"] = hex.EncodeToString(o.verity.Salt)
		}
		in.Options["verity"] = jsonText(v)
	}
	if o.strict {
		in.Options["strict"] = "true"
	}
	if o.limits != nil {
		in.Options["limits"] = jsonText(*o.limits)
	}
	for i, a := range o.adds {
		d, err := treeDigest(a.Src)
		if err != nil {
			return store.Inputs{}, nil, &CheckError{Op: "add", Path: a.Src, Err: err}
		}
		in.Options["add."+strconv.Itoa(i)] = a.Dst + ":" + strconv.FormatUint(uint64(a.Mode), 8)
		in.Files["add."+strconv.Itoa(i)] = d
	}
	if len(o.caCerts) > 0 {
		h := sha256.New()
		for _, c := range o.caCerts {
			fmt.Fprintf(h, "%d\n", len(c.Raw))
			h.Write(c.Raw)
		}
		in.Files["ca-certs"] = "sha256:" + hex.EncodeToString(h.Sum(nil))
		in.Options["ca-cert-strict"] = strconv.FormatBool(o.caStrict)
	}
	return in, r, nil
}

// jsonText is v as compact JSON; v is a plain struct or map of the options.
func jsonText(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprintf("%#v", v)
	}
	return string(b)
}

// treeDigest hashes what [WithAdd] copies from src into the image: every entry's path
// below src, type, permission bits, modification time, link target and content, in the
// order of a lexical walk. Symbolic links are not followed, as the copy does not follow
// them.
func treeDigest(src string) (string, error) {
	h := sha256.New()
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		fmt.Fprintf(h, "%q %o %d %d\n", rel, uint32(fi.Mode()), fi.ModTime().UnixNano(), fi.Size())
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			t, err := os.Readlink(p)
			if err != nil {
				return err
			}
			fmt.Fprintf(h, "-> %q\n", t)
		case fi.Mode().IsRegular():
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			_, err = io.Copy(h, f)
			f.Close()
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("hash %s: %w", src, err)
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), nil
}

const modulePath = "github.com/img2ext4/img2ext4"

var (
	versionOnce sync.Once
	versionText string
)

// toolVersion names the code that converts: this module's version and, when it is the
// main module, the VCS revision. A build that cannot name its source that way (a
// development build, one with local changes or without VCS stamps, a test binary) adds
// the SHA-256 of the running executable, so that a store never serves an artifact made by
// other code under the same name.
func toolVersion() string {
	versionOnce.Do(func() {
		versionText = modulePath + " unknown"
		exact := false
		if bi, ok := debug.ReadBuildInfo(); ok {
			if bi.Main.Path == modulePath {
				rev, modified := "", false
				for _, s := range bi.Settings {
					switch s.Key {
					case "vcs.revision":
						rev = s.Value
					case "vcs.modified":
						modified = s.Value == "true"
					}
				}
				versionText = modulePath + " " + bi.Main.Version + " " + rev
				exact = rev != "" && !modified
			}
			for _, d := range bi.Deps {
				if d.Path == modulePath {
					versionText = modulePath + " " + d.Version + " " + d.Sum
					exact = d.Sum != "" && d.Replace == nil
				}
			}
		}
		if exact {
			return
		}
		if exe, err := os.Executable(); err == nil {
			if f, err := os.Open(exe); err == nil {
				h := sha256.New()
				if _, err := io.Copy(h, f); err == nil {
					versionText += " exe sha256:" + hex.EncodeToString(h.Sum(nil))
				}
				f.Close()
			}
		}
	})
	return versionText
}
