package artifact_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/img2ext4/img2ext4/artifact"
	"github.com/img2ext4/img2ext4/internal/registrytest"
)

// TestPushPull pushes an image with a subject, finds it among the subject's referrers
// (through the API or the fallback tag), pulls it into another directory and compares:
// the same bytes, about as many allocated blocks, every chunk fetched once and verified.
func TestPushPull(t *testing.T) {
	forEachRegistry(t, func(t *testing.T, reg *registrytest.Registry) {
		ctx := context.Background()
		src := buildImage(t, t.TempDir(), 1)
		repo := reg.Host + "/rootfs"
		subject := pushSource(t, repo)
		reg.Reset()
		p, err := artifact.PushFile(ctx, src, repo+":v1", artifact.WithSubject(subject),
			artifact.WithAnnotations(map[string]string{artifact.AnnotationStoreKey: "key-1"}))
		if err != nil {
			t.Fatal(err)
		}
		fi, _ := os.Stat(src)
		if p.Index.Size != fi.Size() || p.Holes == 0 || p.Chunks == 0 || p.Uploaded != p.Blobs {
			t.Fatalf("pushed %+v: want size %d, holes and chunks, every blob uploaded", p, fi.Size())
		}
		if got := reg.Count(registrytest.BlobUpload); got != p.Blobs+1 {
			t.Errorf("%d blob uploads, want %d chunks and the index", got, p.Blobs+1)
		}
		if got := p.Descriptor.Annotations[artifact.AnnotationImageSize]; got != strconv.FormatInt(fi.Size(), 10) {
			t.Errorf("image size annotation %q, want %d", got, fi.Size())
		}
		if p.Descriptor.Annotations[artifact.AnnotationFilesystemUUID] == "" || p.Descriptor.Annotations[artifact.AnnotationFilesystemSize] == "" {
			t.Errorf("annotations %v lack the filesystem's UUID and size", p.Descriptor.Annotations)
		}

		found, err := artifact.Find(ctx, repo, subject.Digest, map[string]string{artifact.AnnotationStoreKey: "key-1"})
		if err != nil {
			t.Fatal(err)
		}
		if len(found) != 1 || found[0].Digest != p.Descriptor.Digest {
			t.Fatalf("referrers of the subject with key-1: %v, want %s", found, p.Descriptor.Digest)
		}
		if found, err := artifact.Find(ctx, repo, subject.Digest, map[string]string{artifact.AnnotationStoreKey: "key-2"}); err != nil || len(found) != 0 {
			t.Fatalf("referrers with key-2: %v, %v; want none", found, err)
		}
		// The fallback tag exists exactly where the registry has no referrers API.
		fallback, _ := name.ParseReference(repo + ":sha256-" + subject.Digest.Hex)
		_, err = remote.Head(fallback)
		if reg.Referrers == (err == nil) {
			t.Errorf("fallback tag %s: %v; the registry has the referrers API: %v", fallback, err, reg.Referrers)
		}

		reg.Reset()
		out := filepath.Join(t.TempDir(), "pulled.ext4")
		a, st, err := pullFile(t, repo+":v1", out)
		if err != nil {
			t.Fatal(err)
		}
		if a.Ref.DigestStr() != p.Descriptor.Digest.String() || st.Blobs != p.Blobs {
			t.Errorf("pulled %s with %d blobs, pushed %s with %d", a.Ref, st.Blobs, p.Descriptor.Digest, p.Blobs)
		}
		if got := reg.Count(registrytest.BlobGet); got != p.Blobs+1 {
			t.Errorf("%d blob downloads, want %d chunks and the index", got, p.Blobs+1)
		}
		want, _ := os.ReadFile(src)
		got, _ := os.ReadFile(out)
		if !bytes.Equal(got, want) {
			t.Fatal("pulled image differs from the pushed one")
		}
		// Allocation is per 4 KiB block on both sides, so equal up to the filesystem's
		// own metadata blocks (an extent block or two).
		sb, ob := blocks(t, src), blocks(t, out)
		if ob > sb+64 || ob < sb/2 {
			t.Errorf("pulled image has %d allocated 512-byte blocks, the source %d", ob, sb)
		}
		if ob*512 >= fi.Size() {
			t.Errorf("pulled image is not sparse: %d bytes allocated of %d", ob*512, fi.Size())
		}
		t.Logf("%s: %d bytes, %d chunks, %d holes, %d blobs; allocated %d vs %d", reg.Name, fi.Size(), p.Chunks, p.Holes, p.Blobs, ob*512, sb*512)
	})
}

// TestCorruptChunk changes one byte of a chunk blob in the registry's storage: the fetch
// fails with ErrCorrupt naming the chunk.
func TestCorruptChunk(t *testing.T) {
	forEachRegistry(t, func(t *testing.T, reg *registrytest.Registry) {
		ctx := context.Background()
		src := buildImage(t, t.TempDir(), 2)
		repo := reg.Host + "/rootfs"
		p, err := artifact.PushFile(ctx, src, repo+":v1")
		if err != nil {
			t.Fatal(err)
		}
		victim := p.Index.Blobs()[len(p.Index.Blobs())/2]
		path := reg.BlobPath(victim.Digest.Hex)
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		b[len(b)/2] ^= 0x40
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		_, _, err = pullFile(t, repo+":v1", filepath.Join(t.TempDir(), "out"))
		var ce *artifact.ChunkError
		if !errors.Is(err, artifact.ErrCorrupt) || !errors.As(err, &ce) || ce.Digest != victim.Digest {
			t.Fatalf("pull of a corrupted chunk: %v; want ErrCorrupt in a ChunkError for %s", err, victim.Digest)
		}
	})
}

// TestPushVersion2 pushes an image, then a copy with two chunks changed and one hole
// filled: the second push uploads those three chunks and its index, nothing else.
func TestPushVersion2(t *testing.T) {
	forEachRegistry(t, func(t *testing.T, reg *registrytest.Registry) {
		ctx := context.Background()
		dir := t.TempDir()
		src := buildImage(t, dir, 3)
		repo := reg.Host + "/rootfs"
		p1, err := artifact.PushFile(ctx, src, repo+":v1")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := os.ReadFile(src)
		var changed []int64
		for _, c := range p1.Index.Chunks[1:] { // not the superblock's
			if !c.Hole() && len(changed) < 2 {
				changed = append(changed, c.Offset+100)
			}
		}
		last := p1.Index.Chunks[len(p1.Index.Chunks)-1]
		if !last.Hole() {
			t.Fatalf("the image ends with data, want free space (a hole): %+v", last)
		}
		changed = append(changed, last.Offset+5)
		for _, off := range changed {
			b[off] ^= 0xff
		}
		v2 := filepath.Join(dir, "v2.ext4")
		if err := os.WriteFile(v2, b, 0o644); err != nil {
			t.Fatal(err)
		}
		reg.Reset()
		p2, err := artifact.PushFile(ctx, v2, repo+":v2")
		if err != nil {
			t.Fatal(err)
		}
		if p2.Uploaded != 3 || reg.Count(registrytest.BlobUpload) != 4 {
			t.Errorf("version 2 uploaded %d chunks (%d blob uploads in all); want 3 chunks and the index", p2.Uploaded, reg.Count(registrytest.BlobUpload))
		}
		if heads := reg.Count(registrytest.BlobHead); heads < p2.Blobs {
			t.Errorf("%d HEAD requests for %d blobs", heads, p2.Blobs)
		}
		t.Logf("%s: version 2 uploaded %d of %d chunk blobs (%d bytes)", reg.Name, p2.Uploaded, p2.Blobs, p2.UploadedBytes)
		out := filepath.Join(dir, "pulled.ext4")
		if _, _, err := pullFile(t, repo+":v2", out); err != nil {
			t.Fatal(err)
		}
		if got, _ := os.ReadFile(out); !bytes.Equal(got, b) {
			t.Fatal("pulled version 2 differs from the pushed one")
		}
	})
}
