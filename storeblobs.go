package img2ext4

import (
	"context"

	"github.com/img2ext4/img2ext4/ocifetch"
	"github.com/img2ext4/img2ext4/store"
)

// OpenStore opens the artifact store in root (see [store.Open]) for [ConvertStored] and
// [WithStore], whose conversions keep the compressed blobs they download in the store's
// blob cache ([store.Store.BlobDir], see [ocifetch.WithBlobCache]), so that an image
// sharing layers with one converted before, or the same image converted with other
// options, downloads only what it lacks. Its [store.Store.Prune] prunes the blob cache
// too, by the same bounds counted on its own: the least recently used blobs beyond
// MaxSize, and those unused for longer than OlderThan.
func OpenStore(root string, opts ...store.Option) (*store.Store, error) {
	return store.Open(root, append([]store.Option{store.WithBlobPrune(pruneBlobs)}, opts...)...)
}

// pruneBlobs prunes the blob cache in dir as the store's prune options say.
func pruneBlobs(ctx context.Context, dir string, p store.PruneOptions) (store.BlobPruneReport, error) {
	c, err := ocifetch.OpenBlobCache(dir)
	if err != nil {
		return store.BlobPruneReport{}, err
	}
	limit := p.MaxSize
	if limit <= 0 {
		limit = -1 // no bound (ocifetch's zero empties the cache)
	}
	res, err := c.Prune(ctx, ocifetch.PruneOptions{MaxSize: limit, OlderThan: p.OlderThan})
	return store.BlobPruneReport{Removed: len(res.Removed), Freed: res.RemovedBytes}, err
}
