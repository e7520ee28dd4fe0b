package store

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// List returns the artifacts of every root, the most recently used first. Entries that
// cannot be read are left out; [Store.Verify] reports them.
func (s *Store) List(ctx context.Context) ([]*Artifact, error) {
	var as []*Artifact
	for _, root := range s.roots {
		des, err := os.ReadDir(filepath.Join(root, artifactsDir))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("store: list %s: %w", root, err)
		}
		for _, de := range des {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			if _, err := ParseKey(de.Name()); err != nil {
				continue
			}
			if a, err := s.load(root, de.Name()); err == nil {
				as = append(as, a)
			}
		}
	}
	slices.SortStableFunc(as, func(a, b *Artifact) int { return b.LastUse.Compare(a.LastUse) })
	return as, nil
}

// Remove removes the artifact of key from every root, waiting (as [Store.Build] does)
// for a process building it. Readers that already opened its files keep reading them. It
// returns [ErrNotFound] when there is none.
func (s *Store) Remove(ctx context.Context, key Key) error {
	if _, err := ParseKey(string(key)); err != nil {
		return err
	}
	unlock, err := s.lock(ctx, key)
	if err != nil {
		return err
	}
	defer unlock()
	found, err := s.removeLocked(key.Hex())
	if err != nil {
		return err
	}
	if !found {
		return fmt.Errorf("%w %s", ErrNotFound, key)
	}
	return nil
}

// removeLocked moves the artifact named hex out of every root's artifacts (one rename,
// so readers see all or nothing), then deletes it; the caller holds its lock.
func (s *Store) removeLocked(hex string) (bool, error) {
	found := false
	for _, root := range s.roots {
		dir := filepath.Join(root, artifactsDir, hex)
		if _, err := os.Lstat(dir); errors.Is(err, fs.ErrNotExist) {
			continue
		}
		trash, err := os.MkdirTemp(filepath.Join(root, trashDir), hex+".")
		if err != nil {
			return found, fmt.Errorf("store: remove %s: %w", dir, err)
		}
		if err := os.Rename(dir, filepath.Join(trash, "artifact")); err != nil {
			os.Remove(trash)
			return found, fmt.Errorf("store: remove %s: %w", dir, err)
		}
		found = true
		if err := syncDir(filepath.Join(root, artifactsDir)); err != nil {
			return found, err
		}
		if err := os.RemoveAll(trash); err != nil {
			return found, fmt.Errorf("store: remove %s: %w", trash, err)
		}
	}
	return found, nil
}

// PruneOptions says what [Store.Prune] removes. With both zero it removes only what
// killed processes left behind.
type PruneOptions struct {
	// MaxSize, when positive, is the disk space the artifacts may keep: the most
	// recently used are kept while their allocated sizes add up to at most MaxSize, and
	// every artifact used less recently than the first that does not fit is removed.
	MaxSize int64
	// OlderThan, when positive, removes artifacts not used for longer.
	OlderThan time.Duration
}

// PruneReport says what [Store.Prune] did.
type PruneReport struct {
	// Removed lists the artifacts removed.
	Removed []*Artifact `json:"removed"`
	// Kept counts the artifacts kept, and KeptBytes their allocated size.
	Kept      int   `json:"kept"`
	KeptBytes int64 `json:"kept_bytes"`
	// Freed is the allocated size of the removed artifacts.
	Freed int64 `json:"freed"`
	// Busy counts artifacts that would have been removed but were locked by another
	// process (being removed or rebuilt): they are kept.
	Busy int `json:"busy"`
	// Stale counts work directories of killed builds and leftovers of killed removals
	// that were deleted.
	Stale int `json:"stale"`
	// Blobs is what the blob cache pruner (see [WithBlobPrune]) reported, when set.
	Blobs *BlobPruneReport `json:"blobs,omitempty"`
}

// BlobPruneReport is what a blob cache pruner reports to [Store.Prune].
type BlobPruneReport struct {
	// Removed counts the blobs removed and Freed their bytes.
	Removed int   `json:"removed"`
	Freed   int64 `json:"freed"`
}

// BlobPruner prunes the blob cache in dir by the same options as the artifacts.
type BlobPruner func(ctx context.Context, dir string, opts PruneOptions) (BlobPruneReport, error)

// WithBlobPrune makes [Store.Prune] prune the blob cache in [Store.BlobDir] with fn after
// the artifacts. The default leaves the blob cache alone.
func WithBlobPrune(fn BlobPruner) Option {
	return func(o *options) error { o.blobPrune = fn; return nil }
}

// Prune removes artifacts by last use as opts says (least recently used first), the work
// directories killed builds left (those whose key no process holds) and leftovers of
// killed removals, then prunes the blob cache (see [WithBlobPrune]).
func (s *Store) Prune(ctx context.Context, opts PruneOptions) (*PruneReport, error) {
	rep := &PruneReport{Removed: []*Artifact{}}
	rep.Stale = s.sweep()
	as, err := s.List(ctx)
	if err != nil {
		return nil, err
	}
	now := s.o.now()
	var kept int64
	over := false
	for _, a := range as {
		old := opts.OlderThan > 0 && now.Sub(a.LastUse) > opts.OlderThan
		if opts.MaxSize > 0 && !over && kept+a.Allocated > opts.MaxSize {
			over = true
		}
		if !old && !over {
			kept += a.Allocated
			rep.Kept++
			continue
		}
		if err := ctx.Err(); err != nil {
			return rep, err
		}
		f, err := tryLock(s.lockPath(a.Key.Hex()))
		if err != nil {
			return rep, err
		}
		if f == nil {
			rep.Busy++
			rep.Kept++
			kept += a.Allocated
			continue
		}
		_, err = s.removeLocked(a.Key.Hex())
		if err == nil {
			os.Remove(f.Name()) // only the holder removes a lock file
		}
		f.Close()
		if err != nil {
			return rep, err
		}
		rep.Removed = append(rep.Removed, a)
		rep.Freed += a.Allocated
	}
	rep.KeptBytes = kept
	if s.o.blobPrune != nil {
		b, err := s.o.blobPrune(ctx, s.BlobDir(), opts)
		if err != nil {
			return rep, fmt.Errorf("store: prune blobs: %w", err)
		}
		rep.Blobs = &b
	}
	return rep, nil
}

// sweep deletes the work directories whose key no process holds (left by killed builds)
// and everything in trash (left by killed removals), and returns how many it deleted.
func (s *Store) sweep() int {
	n := 0
	for _, root := range s.roots {
		// Files of a killed Preflight or Open; one being used a moment longer is
		// unlinked under its checker, which minds no more than the lock on it.
		for _, d := range []string{workDir, locksDir} {
			checks, _ := filepath.Glob(filepath.Join(root, d, checkPattern))
			for _, c := range checks {
				if os.Remove(c) == nil {
					n++
				}
			}
		}
		des, _ := os.ReadDir(filepath.Join(root, workDir))
		for _, de := range des {
			hex, _, ok := strings.Cut(de.Name(), ".")
			if _, err := ParseKey(hex); !ok || err != nil {
				continue
			}
			f, err := tryLock(s.lockPath(hex))
			if err != nil || f == nil {
				continue // being built
			}
			if os.RemoveAll(filepath.Join(root, workDir, de.Name())) == nil {
				n++
			}
			f.Close()
		}
		des, _ = os.ReadDir(filepath.Join(root, trashDir))
		for _, de := range des {
			if os.RemoveAll(filepath.Join(root, trashDir, de.Name())) == nil {
				n++
			}
		}
	}
	return n
}

// Problem is something wrong [Store.Verify] found.
type Problem struct {
	// Key is the artifact's key, when the entry is named by one.
	Key Key `json:"key,omitempty"`
	// Path is the entry.
	Path string `json:"path"`
	// Err says what is wrong.
	Err string `json:"error"`
}

// VerifyReport says what [Store.Verify] checked and found.
type VerifyReport struct {
	// Checked counts the artifacts read, and Bytes the bytes hashed.
	Checked int   `json:"checked"`
	Bytes   int64 `json:"bytes"`
	// Problems lists what does not match; empty for a store that verifies clean.
	Problems []Problem `json:"problems"`
	// Stale counts the leftovers of killed processes deleted first (see [Store.Prune]).
	Stale int `json:"stale"`
}

// OK reports whether the store verified clean.
func (r *VerifyReport) OK() bool { return len(r.Problems) == 0 }

// Verify deletes what killed processes left (as [Store.Prune] does) and then reads every
// artifact in every root: each must be named by its key, hold its record, the recorded
// files with their sizes and digests and nothing else. A mismatch is a [Problem] in the
// report, not an error; the error is for a store that cannot be read.
func (s *Store) Verify(ctx context.Context) (*VerifyReport, error) {
	rep := &VerifyReport{Problems: []Problem{}}
	rep.Stale = s.sweep()
	for _, root := range s.roots {
		des, err := os.ReadDir(filepath.Join(root, artifactsDir))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("store: verify %s: %w", root, err)
		}
		for _, de := range des {
			path := filepath.Join(root, artifactsDir, de.Name())
			key, err := ParseKey(de.Name())
			if err != nil {
				rep.Problems = append(rep.Problems, Problem{Path: path, Err: "not an artifact: its name is not a key"})
				continue
			}
			a, err := s.load(root, de.Name())
			if err == nil && a.Key != key {
				err = fmt.Errorf("%w: holds the record of %s", ErrCorrupt, a.Key)
			}
			if err == nil {
				err = a.verify(ctx)
			}
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			rep.Checked++
			if err != nil {
				rep.Problems = append(rep.Problems, Problem{Key: key, Path: path, Err: err.Error()})
				continue
			}
			rep.Bytes += a.Size
		}
	}
	return rep, nil
}

// Verify reads the artifact's files and compares them with its record.
func (a *Artifact) verify(ctx context.Context) error {
	des, err := os.ReadDir(a.Dir)
	if err != nil {
		return fmt.Errorf("store: verify %s: %w", a.Dir, err)
	}
	want := map[string]File{}
	for _, f := range a.Files {
		want[f.Name] = f
	}
	for _, de := range des {
		if _, ok := want[de.Name()]; !ok && de.Name() != recordFile && de.Name() != usedFile {
			return fmt.Errorf("%w: %s holds %s, which its record does not list", ErrCorrupt, a.Dir, de.Name())
		}
	}
	var size int64
	for _, f := range a.Files {
		size += f.Size
	}
	if size != a.Size {
		return fmt.Errorf("%w: %s: its files add up to %d bytes, its record says %d", ErrCorrupt, a.Dir, size, a.Size)
	}
	for _, f := range a.Files {
		got, err := hashFile(ctx, filepath.Join(a.Dir, f.Name), false)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrCorrupt, err)
		}
		if got.Size != f.Size || got.Digest != f.Digest {
			return fmt.Errorf("%w: %s is %d bytes with digest %s, its record says %d bytes with %s", ErrCorrupt, filepath.Join(a.Dir, f.Name), got.Size, got.Digest, f.Size, f.Digest)
		}
	}
	if d := contentDigest(a.Files); d != a.Digest {
		return fmt.Errorf("%w: %s: content digest %s, its record says %s", ErrCorrupt, a.Dir, d, a.Digest)
	}
	return nil
}

// Verify reads the artifact's files and compares them with its record; a mismatch is an
// [ErrCorrupt].
func (a *Artifact) Verify(ctx context.Context) error { return a.verify(ctx) }
