package img2ext4

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/img2ext4/img2ext4/artifact"
)

// PullResult describes an image [Pull] wrote.
type PullResult struct {
	// Artifact is the artifact pulled: its digest, annotations and chunk index.
	Artifact *artifact.Artifact
	// Stats counts the blobs downloaded and the bytes written.
	Stats artifact.FetchStats
}

// Pull fetches the ext4 image artifact ref (a registry tag or digest; see package
// [artifact]) into out, verifying every chunk. A new or existing file at out is
// replaced atomically, as [Convert] replaces it: the image is written into a temporary
// file beside out, sparse (holes and all-zero blocks are not written), synced and renamed
// into place only when every chunk has verified, so a corrupt chunk, an error or a
// cancelled ctx leaves nothing new at out. A block device at out is written in place, as
// Convert writes one: it must hold the image, blocks the image does not use read back
// zeros, and its superblock is written last. What can be checked before the download (a
// directory at out, a device too small, too little free space) is a *[CheckError].
func Pull(ctx context.Context, ref, out string, opts ...artifact.Option) (*PullResult, error) {
	if out == "" {
		return nil, fmt.Errorf("pull %s: empty output path", ref)
	}
	t, err := openTarget(out, &options{format: FormatExt4})
	if err != nil {
		return nil, err
	}
	defer t.Close()
	a, err := artifact.Open(ctx, ref, opts...)
	if err != nil {
		return nil, err
	}
	size := a.Size()
	if t.dev != nil {
		if size > t.dev.size {
			return nil, &CheckError{Op: "write image", Path: out, Err: fmt.Errorf("the image (%d bytes) is larger than the device (%d bytes)", size, t.dev.size)}
		}
		t.dev.fsSize = size
	} else if err := checkSpace(filepath.Dir(t.real), a.Index.DataBytes()); err != nil {
		return nil, &CheckError{Op: "write image", Path: out, Err: err}
	}
	res := &PullResult{Artifact: a}
	err = t.write("write image", func(f outputFile) error {
		if tr, ok := f.(interface{ Truncate(int64) error }); ok {
			if err := tr.Truncate(size); err != nil {
				return fmt.Errorf("write image %s: %w", out, err)
			}
		}
		res.Stats, err = a.Fetch(ctx, f)
		if err != nil {
			return fmt.Errorf("pull %s: %w", a.Ref, err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return res, nil
}
