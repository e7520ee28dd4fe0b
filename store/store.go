package store

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
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Directories and files below a store root.
const (
	artifactsDir = "artifacts" // published artifacts, one directory per key
	locksDir     = "locks"     // one lock file per key, in the primary root only
	workDir      = "work"      // artifacts being built: KEYHEX.RANDOM
	trashDir     = "trash"     // artifacts being removed
	blobsDir     = "blobs"     // the blob cache
	recordFile   = "record.json"
	usedFile     = "used" // its modification time is the artifact's last use
)

// Sentinel errors; callers branch on them with errors.Is.
var (
	// ErrNotFound reports a key the store holds no artifact for.
	ErrNotFound = errors.New("store: no artifact for the key")
	// ErrWaitTimeout reports that another process kept a key locked for longer than the
	// store's wait (see [WithWait]).
	ErrWaitTimeout = errors.New("store: timed out waiting for another process building the same key")
	// ErrCorrupt reports an artifact whose files do not match its record.
	ErrCorrupt = errors.New("store: artifact does not match its record")
)

// DefaultWait is how long [Store.Build] and [Store.Remove] wait for another process holding
// the same key unless [WithWait] says otherwise.
const DefaultWait = time.Hour

// Store is an artifact store rooted in a directory, with optional fallback roots. A Store
// is safe for concurrent use by goroutines, and any number of processes may use the same
// roots at once: they coordinate through lock files (flock) in the primary root, so every
// operation that needs a lock is cross-process.
type Store struct {
	roots []string // primary first
	o     options
}

type options struct {
	fallbacks []string
	wait      time.Duration
	verifyGet bool
	now       func() time.Time
	blobPrune BlobPruner
}

// Option configures [Open].
type Option func(*options) error

// WithFallback adds roots used, in order, for a new artifact when the primary root's
// filesystem lacks the space its build needs (see [Builder.Need]). Artifacts are looked up
// in every root. The default is none.
func WithFallback(dirs ...string) Option {
	return func(o *options) error {
		for _, d := range dirs {
			if d == "" {
				return errors.New("store: empty fallback root")
			}
		}
		o.fallbacks = append(o.fallbacks, dirs...)
		return nil
	}
}

// WithWait bounds how long [Store.Build] waits for another process building the same key
// (and [Store.Remove] for one using it) before failing with [ErrWaitTimeout]. The
// context given to each call can end the wait earlier. The default is [DefaultWait].
func WithWait(d time.Duration) Option {
	return func(o *options) error {
		if d <= 0 {
			return fmt.Errorf("store: wait %s: want a positive duration", d)
		}
		o.wait = d
		return nil
	}
}

// WithVerifyOnGet makes [Store.Get] (and a hit in [Store.Build]) read every file of the
// artifact and compare it with its record before returning it, failing with
// [ErrCorrupt] on a mismatch. The default is false: Get reads only the record, so that a
// hit costs milliseconds whatever the artifact's size; [Store.Verify] checks everything.
func WithVerifyOnGet(verify bool) Option {
	return func(o *options) error { o.verifyGet = verify; return nil }
}

// Open opens the store rooted in root, creating its directories when missing, and checks
// that root is writable and lockable (see [Preflight] for a check with sizes). Fallback
// roots are created when first used.
func Open(root string, opts ...Option) (*Store, error) {
	o := options{wait: DefaultWait, now: time.Now}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, err
		}
	}
	if root == "" {
		return nil, errors.New("store: empty root")
	}
	s := &Store{o: o}
	for _, r := range append([]string{root}, o.fallbacks...) {
		abs, err := filepath.Abs(r)
		if err != nil {
			return nil, fmt.Errorf("store: root %s: %w", r, err)
		}
		s.roots = append(s.roots, abs)
	}
	if err := s.prepare(s.roots[0]); err != nil {
		return nil, err
	}
	if err := checkLockable(filepath.Join(s.roots[0], locksDir)); err != nil {
		return nil, err
	}
	return s, nil
}

// prepare creates the directories of root.
func (s *Store) prepare(root string) error {
	for _, d := range []string{artifactsDir, locksDir, workDir, trashDir, blobsDir} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			return fmt.Errorf("store: create %s: %w (the store root must be a writable directory)", filepath.Join(root, d), err)
		}
	}
	return nil
}

// Root returns the primary root.
func (s *Store) Root() string { return s.roots[0] }

// Roots returns every root, the primary first.
func (s *Store) Roots() []string { return slices.Clone(s.roots) }

// BlobDir returns the directory of the blob cache shared by all artifacts: "blobs" in the
// primary root.
func (s *Store) BlobDir() string { return filepath.Join(s.roots[0], blobsDir) }

// File is one file of an artifact, as recorded when it was published.
type File struct {
	// Name is the file's name in the artifact directory.
	Name string `json:"name"`
	// Size is its length in bytes.
	Size int64 `json:"size"`
	// Digest is the SHA-256 of its content, "sha256:…".
	Digest string `json:"digest"`
}

// Record is what the store keeps about an artifact, written once when it is published.
type Record struct {
	// Key is the artifact's key.
	Key Key `json:"key"`
	// Inputs are the inputs the key was computed from.
	Inputs Inputs `json:"inputs"`
	// Files lists the artifact's files, sorted by name.
	Files []File `json:"files"`
	// Size is the sum of the files' sizes.
	Size int64 `json:"size"`
	// Digest is the artifact's content digest: the SHA-256 of one line per file,
	// "DIGEST SIZE NAME\n", in the order of Files.
	Digest string `json:"digest"`
	// Created is when the artifact was published.
	Created time.Time `json:"created"`
	// Meta is what the build function returned, kept as given (JSON): for a conversion,
	// its result.
	Meta json.RawMessage `json:"meta,omitempty"`
}

// Artifact is a published artifact.
type Artifact struct {
	Record
	// Dir is the directory holding the artifact's files. They must not be changed; a
	// reader that needs a copy to change takes one (see [CopyFile]).
	Dir string
	// Root is the store root holding it.
	Root string
	// LastUse is when it was last built, returned by [Store.Get] or by a hit in
	// [Store.Build].
	LastUse time.Time
	// Allocated is the disk space its files take, in bytes (less than Size for sparse
	// files).
	Allocated int64
	// Built is true when this call of [Store.Build] built the artifact rather than
	// finding it.
	Built bool
}

// Path returns the path of the artifact's file name.
func (a *Artifact) Path(name string) string { return filepath.Join(a.Dir, name) }

// Get returns the artifact of key, or [ErrNotFound]. It reads the record alone (unless
// [WithVerifyOnGet]) and records the use for [Store.Prune].
func (s *Store) Get(ctx context.Context, key Key) (*Artifact, error) {
	if _, err := ParseKey(string(key)); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	for _, root := range s.roots {
		a, err := s.load(root, key.Hex())
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if a.Key != key {
			return nil, fmt.Errorf("%w: %s holds the record of %s", ErrCorrupt, a.Dir, a.Key)
		}
		if s.o.verifyGet {
			if err := a.verify(ctx); err != nil {
				return nil, err
			}
		}
		s.touch(a)
		return a, nil
	}
	return nil, fmt.Errorf("%w %s", ErrNotFound, key)
}

// touch records a use of a now; a store on a read-only filesystem keeps its old time.
func (s *Store) touch(a *Artifact) {
	now := s.o.now()
	if err := os.Chtimes(filepath.Join(a.Dir, usedFile), now, now); err == nil {
		a.LastUse = now
	}
}

// load reads the artifact named hex in root.
func (s *Store) load(root, hex string) (*Artifact, error) {
	dir := filepath.Join(root, artifactsDir, hex)
	b, err := os.ReadFile(filepath.Join(dir, recordFile))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			if _, serr := os.Stat(dir); serr == nil {
				return nil, fmt.Errorf("%w: %s has no %s", ErrCorrupt, dir, recordFile)
			}
		}
		return nil, err
	}
	a := &Artifact{Dir: dir, Root: root}
	if err := json.Unmarshal(b, &a.Record); err != nil {
		return nil, fmt.Errorf("%w: read %s: %w", ErrCorrupt, filepath.Join(dir, recordFile), err)
	}
	if err := checkRecord(&a.Record, hex); err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrCorrupt, filepath.Join(dir, recordFile), err)
	}
	if fi, err := os.Stat(filepath.Join(dir, usedFile)); err == nil {
		a.LastUse = fi.ModTime()
	} else {
		a.LastUse = a.Created
	}
	for _, f := range a.Files {
		var st unix.Stat_t
		if unix.Stat(filepath.Join(dir, f.Name), &st) == nil {
			a.Allocated += st.Blocks * 512
		}
	}
	return a, nil
}

// checkRecord checks what the store acts on in a record read back from disk before it
// uses it: the key is the one its directory is named by (Prune and Remove find the
// directory from the key), and every file is a plain name in the directory, listed once,
// that is not the store's own (Path joins it to the directory).
func checkRecord(r *Record, hex string) error {
	if r.Key.Hex() != hex || !strings.HasPrefix(string(r.Key), "sha256:") {
		return fmt.Errorf("it holds the record of %q", r.Key)
	}
	seen := map[string]bool{}
	for _, f := range r.Files {
		if f.Name == "" || f.Name == "." || f.Name == ".." || strings.ContainsAny(f.Name, "/\x00") ||
			f.Name == recordFile || f.Name == usedFile || seen[f.Name] {
			return fmt.Errorf("it lists the file %q, which is not a file name of an artifact or is listed twice", f.Name)
		}
		seen[f.Name] = true
	}
	return nil
}

// Need is what a build will write, as far as it can be told before it starts: [Store.Build]
// checks that a root has the space for it (see [Preflight]) and otherwise takes a
// fallback root.
type Need struct {
	// Image is the bytes of the artifact's files, written in the store root.
	Image int64
	// Other lists what the build writes elsewhere (temporary files, the blob cache),
	// checked together with Image: sizes on one filesystem add up.
	Other []Usage
}

// Builder makes an artifact for [Store.Build].
type Builder struct {
	// Need, when not nil, estimates what the build will write. It is called only by the
	// process that builds, after taking the key's lock, so that processes waiting for
	// the artifact do no work.
	Need func(ctx context.Context) (Need, error)
	// Build writes the artifact's files into dir, an empty directory of the chosen root
	// that nothing else uses, and returns metadata to keep in the record (JSON, or nil).
	// Only regular files directly in dir become part of the artifact; Build need not
	// sync them. An error, or a cancelled ctx, discards dir.
	Build func(ctx context.Context, dir string) (meta []byte, err error)
}

// Build returns the artifact of key, building it with b when the store has none. Of all
// the callers asking for one key at the same time, in this process or in others, one
// builds and the others wait for it (up to [WithWait], or until their ctx ends) and then
// share its artifact; callers asking for different keys build in parallel. When the
// builder fails, the next waiter builds in its turn. An artifact found damaged (see
// [ErrCorrupt]) is removed and built again.
//
// Publishing is atomic: the files are written into a work directory of the root, synced,
// hashed and recorded, and the directory is renamed into place and its parent synced. A
// process killed at any point leaves either no artifact or a complete one; the work
// directories of killed builds are removed by the next build of the key, by [Store.Prune]
// and by [Store.Verify].
func (s *Store) Build(ctx context.Context, key Key, in Inputs, b Builder) (*Artifact, error) {
	if a, err := s.Get(ctx, key); !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrCorrupt) {
		return a, err
	}
	unlock, err := s.lock(ctx, key)
	if err != nil {
		return nil, err
	}
	defer unlock()
	// Another process may have built it while this one waited.
	a, err := s.Get(ctx, key)
	switch {
	case errors.Is(err, ErrCorrupt): // damaged since: replace it
		if _, err := s.removeLocked(key.Hex()); err != nil {
			return nil, err
		}
	case !errors.Is(err, ErrNotFound):
		return a, err
	}
	hook("locked")
	s.removeWork(key.Hex()) // what killed builds of the key left
	var need Need
	if b.Need != nil {
		if need, err = b.Need(ctx); err != nil {
			return nil, err
		}
	}
	root, err := s.chooseRoot(need)
	if err != nil {
		return nil, err
	}
	work, err := os.MkdirTemp(filepath.Join(root, workDir), key.Hex()+".")
	if err != nil {
		return nil, fmt.Errorf("store: create work directory in %s: %w", root, err)
	}
	hook("work")
	ok := false
	defer func() {
		if !ok {
			os.RemoveAll(work)
		}
	}()
	meta, err := b.Build(ctx, work)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	hook("built")
	if meta != nil && !json.Valid(meta) {
		return nil, fmt.Errorf("store: build of %s returned metadata that is not JSON", key)
	}
	rec, err := seal(ctx, work, key, in, meta, s.o.now())
	if err != nil {
		return nil, err
	}
	hook("sealed")
	dst := filepath.Join(root, artifactsDir, key.Hex())
	if err := os.Rename(work, dst); err != nil {
		return nil, fmt.Errorf("store: publish %s: %w", dst, err)
	}
	ok = true
	hook("renamed")
	if err := syncDir(filepath.Join(root, artifactsDir)); err != nil {
		return nil, err
	}
	hook("published")
	if a, err = s.load(root, key.Hex()); err != nil {
		return nil, err
	}
	a.Record = *rec
	a.Built = true
	return a, nil
}

// hook is called at each step of Build; tests set it to kill the process there.
var hook = func(step string) {}

// seal syncs and hashes the files of work and writes their record into it.
func seal(ctx context.Context, work string, key Key, in Inputs, meta []byte, now time.Time) (*Record, error) {
	des, err := os.ReadDir(work)
	if err != nil {
		return nil, fmt.Errorf("store: read work directory: %w", err)
	}
	rec := &Record{Key: key, Inputs: in, Created: now.UTC(), Meta: meta, Files: []File{}}
	for _, de := range des {
		if !de.Type().IsRegular() {
			return nil, fmt.Errorf("store: build of %s left %s, which is not a regular file", key, filepath.Join(work, de.Name()))
		}
		if de.Name() == recordFile || de.Name() == usedFile {
			return nil, fmt.Errorf("store: build of %s wrote %s, a name the store keeps for itself", key, de.Name())
		}
		f, err := hashFile(ctx, filepath.Join(work, de.Name()), true)
		if err != nil {
			return nil, err
		}
		rec.Files = append(rec.Files, f)
		rec.Size += f.Size
	}
	rec.Digest = contentDigest(rec.Files)
	b, err := json.Marshal(rec)
	if err != nil {
		return nil, fmt.Errorf("store: encode record: %w", err)
	}
	for _, f := range []struct {
		name string
		data []byte
	}{{recordFile, append(b, '\n')}, {usedFile, nil}} {
		if err := writeSynced(filepath.Join(work, f.name), f.data); err != nil {
			return nil, err
		}
	}
	if err := os.Chtimes(filepath.Join(work, usedFile), now, now); err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	if err := syncDir(work); err != nil {
		return nil, err
	}
	return rec, nil
}

// contentDigest is the digest over the files' lines; see [Record.Digest].
func contentDigest(files []File) string {
	h := sha256.New()
	for _, f := range files {
		fmt.Fprintf(h, "%s %d %s\n", f.Digest, f.Size, f.Name)
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}

// hashFile reads the file at path and returns its record; with sync it fsyncs it first.
func hashFile(ctx context.Context, path string, sync bool) (File, error) {
	f, err := os.Open(path)
	if err != nil {
		return File{}, fmt.Errorf("store: %w", err)
	}
	defer f.Close()
	if sync {
		if err := f.Sync(); err != nil {
			return File{}, fmt.Errorf("store: sync %s: %w", path, err)
		}
	}
	h := sha256.New()
	n, err := io.Copy(h, ctxReader{ctx, f})
	if err != nil {
		return File{}, fmt.Errorf("store: read %s: %w", path, err)
	}
	return File{Name: filepath.Base(path), Size: n, Digest: "sha256:" + hex.EncodeToString(h.Sum(nil))}, nil
}

// ctxReader stops reading when ctx ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (r ctxReader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	return r.r.Read(p)
}

// writeSynced creates path with data and syncs it.
func writeSynced(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("store: write %s: %w", path, err)
	}
	return nil
}

// syncDir fsyncs the directory dir, making renames and creations in it durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("store: sync %s: %w", dir, err)
	}
	return nil
}

// chooseRoot returns the first root with the space need asks for, preparing it.
func (s *Store) chooseRoot(need Need) (string, error) {
	var first error
	for _, root := range s.roots {
		if err := s.prepare(root); err != nil {
			if first == nil {
				first = err
			}
			continue
		}
		use := append([]Usage{{Dir: filepath.Join(root, workDir), Bytes: need.Image, What: "artifact"}}, need.Other...)
		if _, err := Preflight(use...); err != nil {
			if first == nil {
				first = err
			}
			continue
		}
		return root, nil
	}
	if len(s.roots) > 1 {
		return "", fmt.Errorf("store: no root has the space (%s): %w", strings.Join(s.roots, ", "), first)
	}
	return "", first
}

// removeWork removes the work directories of the key named hex in every root; the
// caller holds its lock.
func (s *Store) removeWork(hex string) {
	for _, root := range s.roots {
		matches, _ := filepath.Glob(filepath.Join(root, workDir, hex+".*"))
		for _, m := range matches {
			os.RemoveAll(m)
		}
	}
}
