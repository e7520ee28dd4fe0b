package ocifetch

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sys/unix"

	"github.com/img2ext4/img2ext4/layerstream"
)

// BlobCache is a directory of compressed blobs (layers and image configs)
// kept by digest, shared by every process that uses the same directory. Its
// layout is
//
//	DIR/sha256/<hex>       a verified blob, read-only; its mtime is its last use
//	DIR/tmp/               downloads in progress, renamed into place once verified
//	DIR/locks/sha256-<hex> lock files, so that processes download a blob once
//
// A blob is never trusted: every use hashes it against the digest and size
// its descriptor states, and a file that does not match is removed and
// fetched again. A download goes to a temporary file in DIR/tmp, is
// verified while it is written and is renamed into place, so a reader sees
// either a whole blob or none, whatever happens to the writer (kill -9
// included). Processes wanting the same missing blob take turns on a
// per-blob flock: one downloads, the others then find it cached; the lock
// only saves duplicate downloads, correctness never depends on it. Removing
// a blob (see [BlobCache.Prune]) never disturbs a conversion reading it:
// readers hold the file open. The files need a local filesystem on which
// rename is atomic and flock works (not NFS).
//
// Local sources (oci:, oci-archive:, docker-archive:) are read in place and
// never enter the cache. A BlobCache is safe for concurrent use.
type BlobCache struct {
	dir string
}

// OpenBlobCache returns the blob cache in dir, creating the directory and
// its subdirectories when missing.
func OpenBlobCache(dir string) (*BlobCache, error) {
	if dir == "" {
		return nil, errors.New("ocifetch: empty blob cache directory")
	}
	for _, d := range []string{dir, filepath.Join(dir, "tmp"), filepath.Join(dir, "locks")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("open blob cache %s: %w", dir, err)
		}
	}
	return &BlobCache{dir: dir}, nil
}

// WithBlobCache keeps the compressed blobs that [Image] (image configs,
// layers read directly) and [Prefetch] (layers) fetch from a registry in
// the [BlobCache] at dir, and takes them from there when present, so that a
// second image sharing layers with the first downloads only what differs,
// and converting the same image again downloads no blob at all. The
// directory is created when first used. Blobs of local sources are read in
// place and not cached. The default is no cache: [Prefetch] downloads into
// a temporary directory that [Prefetcher.Close] removes.
func WithBlobCache(dir string) Option {
	return func(o *options) error {
		if dir == "" {
			return errors.New("ocifetch: empty blob cache directory")
		}
		o.blobCache = dir
		return nil
	}
}

// Dir returns the cache's directory.
func (c *BlobCache) Dir() string { return c.dir }

// CachedBlob describes one blob of a [BlobCache].
type CachedBlob struct {
	Digest   v1.Hash   `json:"digest"`
	Size     int64     `json:"size"`
	LastUsed time.Time `json:"lastUsed"` // the file's mtime, set on every use
	Path     string    `json:"path"`
}

// Blobs lists the cache's blobs, least recently used first (ties by
// digest). It does not verify them.
func (c *BlobCache) Blobs() ([]CachedBlob, error) {
	algs, err := os.ReadDir(c.dir)
	if err != nil {
		return nil, fmt.Errorf("list blob cache %s: %w", c.dir, err)
	}
	var blobs []CachedBlob
	for _, a := range algs {
		if !a.IsDir() || a.Name() == "tmp" || a.Name() == "locks" {
			continue
		}
		if _, err := newHasher(a.Name()); err != nil {
			continue
		}
		dir := filepath.Join(c.dir, a.Name())
		es, err := os.ReadDir(dir)
		if err != nil {
			return nil, fmt.Errorf("list blob cache %s: %w", c.dir, err)
		}
		for _, e := range es {
			h := v1.Hash{Algorithm: a.Name(), Hex: e.Name()}
			if !validHex(h) || !e.Type().IsRegular() {
				continue
			}
			fi, err := e.Info()
			if errors.Is(err, fs.ErrNotExist) {
				continue // removed meanwhile
			} else if err != nil {
				return nil, fmt.Errorf("list blob cache %s: %w", c.dir, err)
			}
			blobs = append(blobs, CachedBlob{Digest: h, Size: fi.Size(), LastUsed: fi.ModTime(), Path: filepath.Join(dir, e.Name())})
		}
	}
	sort.Slice(blobs, func(i, j int) bool {
		if !blobs[i].LastUsed.Equal(blobs[j].LastUsed) {
			return blobs[i].LastUsed.Before(blobs[j].LastUsed)
		}
		return blobs[i].Digest.String() < blobs[j].Digest.String()
	})
	return blobs, nil
}

// PruneOptions says which blobs [BlobCache.Prune] removes. A blob goes when
// either bound asks for it; with both zero, Prune removes only abandoned
// downloads and lock files. The fields mean what they mean in package
// store's PruneOptions.
type PruneOptions struct {
	// MaxSize, when positive, bounds the total size of the blobs kept, in
	// bytes: the least recently used are removed until the rest fit. Zero or
	// negative means no bound.
	MaxSize int64
	// OlderThan removes the blobs last used longer ago than it. Zero means no
	// bound.
	OlderThan time.Duration
	// Now is the time ages are measured from; the zero Time means time.Now().
	Now time.Time
}

// PruneResult reports what [BlobCache.Prune] did.
type PruneResult struct {
	Removed      []CachedBlob `json:"removed"`
	RemovedBytes int64        `json:"removedBytes"`
	Kept         int          `json:"kept"`
	KeptBytes    int64        `json:"keptBytes"`
}

// abandonedAfter is how old a temporary file or an unlocked lock file must
// be for Prune to remove it: far beyond the stall timeout of a download,
// which keeps writing to its file.
const abandonedAfter = time.Hour

// Prune removes blobs by least recent use, as p says, along with downloads
// abandoned for more than an hour and lock files no process holds. A
// conversion reading a removed blob is not disturbed (it holds the file
// open); one that needs it later downloads it again. Blobs are removed one
// by one, so a cancelled or failed Prune leaves a consistent cache; the
// result lists what was removed so far.
func (c *BlobCache) Prune(ctx context.Context, p PruneOptions) (PruneResult, error) {
	var res PruneResult
	now := p.Now
	if now.IsZero() {
		now = time.Now()
	}
	blobs, err := c.Blobs()
	if err != nil {
		return res, err
	}
	var total int64
	for _, b := range blobs {
		total += b.Size
	}
	for _, b := range blobs { // least recently used first
		old := p.OlderThan > 0 && now.Sub(b.LastUsed) > p.OlderThan
		big := p.MaxSize > 0 && total > p.MaxSize
		if !old && !big {
			res.Kept++
			res.KeptBytes += b.Size
			continue
		}
		if err := ctx.Err(); err != nil {
			return res, err
		}
		if err := os.Remove(b.Path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return res, fmt.Errorf("prune blob cache %s: %w", c.dir, err)
		}
		total -= b.Size
		res.Removed = append(res.Removed, b)
		res.RemovedBytes += b.Size
	}
	if err := c.pruneLeftovers(now); err != nil {
		return res, err
	}
	return res, nil
}

// pruneLeftovers removes abandoned temporary files and lock files that no
// process holds.
func (c *BlobCache) pruneLeftovers(now time.Time) error {
	tmp := filepath.Join(c.dir, "tmp")
	es, err := os.ReadDir(tmp)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("prune blob cache %s: %w", c.dir, err)
	}
	for _, e := range es {
		if fi, err := e.Info(); err == nil && now.Sub(fi.ModTime()) > abandonedAfter {
			os.Remove(filepath.Join(tmp, e.Name()))
		}
	}
	locks := filepath.Join(c.dir, "locks")
	es, err = os.ReadDir(locks)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("prune blob cache %s: %w", c.dir, err)
	}
	for _, e := range es {
		fi, err := e.Info()
		if err != nil || now.Sub(fi.ModTime()) < abandonedAfter {
			continue
		}
		// Remove a lock file only while holding its lock. A process that
		// opened it just before may then lock the removed file while another
		// creates a new one: both download, which costs time, not integrity.
		p := filepath.Join(locks, e.Name())
		f, err := os.Open(p)
		if err != nil {
			continue
		}
		if unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) == nil {
			os.Remove(p)
		}
		f.Close()
	}
	return nil
}

// validHex reports whether h names a file of the cache: a known algorithm
// and a lowercase hex string of its length.
func validHex(h v1.Hash) bool {
	hs, err := newHasher(h.Algorithm)
	if err != nil || len(h.Hex) != 2*hs.Size() {
		return false
	}
	b, err := hex.DecodeString(h.Hex)
	return err == nil && hex.EncodeToString(b) == h.Hex
}

// path returns the file of digest h.
func (c *BlobCache) path(h v1.Hash) (string, error) {
	if !validHex(h) {
		return "", fmt.Errorf("ocifetch: invalid digest %q", h)
	}
	return filepath.Join(c.dir, h.Algorithm, h.Hex), nil
}

// open returns the cached blob desc names, verified against its size and
// digest and marked as used, or nil when the cache does not hold it. A file
// that fails verification is removed and reported as missing.
func (c *BlobCache) open(ctx context.Context, desc v1.Descriptor) (*os.File, error) {
	p, err := c.path(desc.Digest)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	} else if err != nil {
		return nil, fmt.Errorf("open cached blob %s: %w", p, err)
	}
	if err := c.check(ctx, f, desc); err != nil {
		f.Close()
		if cerr := ctx.Err(); cerr != nil {
			return nil, context.Cause(ctx)
		}
		// Corrupt: remove it, unless another process has already put a
		// fresh copy in its place.
		if fi, serr := os.Stat(p); serr == nil {
			if mine, ferr := f.Stat(); ferr == nil && os.SameFile(fi, mine) {
				os.Remove(p)
			}
		}
		return nil, nil
	}
	now := time.Now()
	os.Chtimes(p, now, now) // last use, for Prune; a read-only cache still works
	return f, nil
}

// check hashes f against desc.
func (c *BlobCache) check(ctx context.Context, f *os.File, desc v1.Descriptor) error {
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if desc.Size >= 0 && fi.Size() != desc.Size {
		return &SizeError{Digest: desc.Digest, Size: desc.Size, Got: fi.Size()}
	}
	vr, err := verify(io.NopCloser(layerstream.ContextReader(ctx, io.NewSectionReader(f, 0, fi.Size()))), desc)
	if err != nil {
		return err
	}
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	_, err = io.CopyBuffer(io.Discard, vr, *bp)
	return err
}

// fill returns the blob desc names, from the cache when it holds it, else
// fetched by fetch, which writes the blob's verified bytes to tmp (at its
// current offset, in order) and fails on a mismatch; fetch may open tmp's
// name to read the bytes as they arrive, and that file stays readable after
// fill returns, whether tmp was renamed into place or removed. The download
// goes to tmp, renamed into place once fetch has verified it; while it runs,
// other processes asking for the same blob wait for it.
func (c *BlobCache) fill(ctx context.Context, desc v1.Descriptor, fetch func(tmp *os.File) error) (*os.File, error) {
	if f, err := c.open(ctx, desc); f != nil || err != nil {
		return f, err
	}
	unlock, err := c.lock(ctx, desc.Digest)
	if err != nil {
		return nil, err
	}
	defer unlock()
	// Whoever held the lock may have fetched it meanwhile.
	if f, err := c.open(ctx, desc); f != nil || err != nil {
		return f, err
	}
	p, err := c.path(desc.Digest)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return nil, fmt.Errorf("blob cache: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Join(c.dir, "tmp"), desc.Digest.Algorithm+"-"+desc.Digest.Hex+"-*")
	if err != nil {
		return nil, fmt.Errorf("blob cache: %w", err)
	}
	fail := func(err error) (*os.File, error) {
		tmp.Close()
		os.Remove(tmp.Name())
		return nil, err
	}
	if err := fetch(tmp); err != nil {
		return fail(err)
	}
	// No fsync: a file torn by a crash fails verification on its next use
	// and is fetched again.
	if err := tmp.Chmod(0o444); err != nil {
		return fail(fmt.Errorf("blob cache: %w", err))
	}
	if err := os.Rename(tmp.Name(), p); err != nil {
		return fail(fmt.Errorf("blob cache: %w", err))
	}
	return tmp, nil
}

// lockPoll bounds the wait between two attempts to take a blob's lock.
const lockPoll = 200 * time.Millisecond

// lock takes the lock of digest h, waiting while another process holds it,
// until ctx ends. The returned function releases it.
func (c *BlobCache) lock(ctx context.Context, h v1.Hash) (func(), error) {
	p := filepath.Join(c.dir, "locks", h.Algorithm+"-"+h.Hex)
	f, err := os.OpenFile(p, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("blob cache: lock %s: %w", h, err)
	}
	wait := 5 * time.Millisecond
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			now := time.Now()
			os.Chtimes(p, now, now) // in use: Prune leaves it alone
			return func() { f.Close() }, nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, unix.EINTR) {
			f.Close()
			return nil, fmt.Errorf("blob cache: lock %s: %w", h, err)
		}
		if err := sleep(ctx, wait); err != nil {
			f.Close()
			return nil, err
		}
		wait = min(2*wait, lockPoll)
	}
}

// get returns the verified blob desc names from the cache, fetching it
// with open when missing. open returns the unverified blob stream.
func (c *BlobCache) get(ctx context.Context, desc v1.Descriptor, open func() (io.ReadCloser, error)) (*os.File, error) {
	return c.fill(ctx, desc, func(w *os.File) error {
		rc, err := open()
		if err != nil {
			return err
		}
		vr, err := verify(rc, desc)
		if err != nil {
			return err
		}
		defer vr.Close()
		bp := copyBufs.Get().(*[]byte)
		defer copyBufs.Put(bp)
		_, err = io.CopyBuffer(w, layerstream.ContextReader(ctx, vr), *bp)
		return err
	})
}

// fileReader reads an open file from its start and closes it.
func fileReader(f *os.File, size int64) io.ReadCloser {
	return &sectionFile{SectionReader: io.NewSectionReader(f, 0, size), f: f}
}
