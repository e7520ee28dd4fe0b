package artifact_test

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/img2ext4/img2ext4/artifact"
	"github.com/img2ext4/img2ext4/internal/registrytest"
	"github.com/klauspost/compress/zstd"
)

// TestBlobDigestOnly replaces a chunk blob in the registry's storage with other bytes of
// the same size that decompress to the same chunk (recompressed, behind a zstd skippable
// frame): only the blob's digest tells them apart, and the fetch must fail on it.
func TestBlobDigestOnly(t *testing.T) {
	forEachRegistry(t, func(t *testing.T, reg *registrytest.Registry) {
		ctx := context.Background()
		src := buildImage(t, t.TempDir(), 4)
		repo := reg.Host + "/rootfs"
		p, err := artifact.PushFile(ctx, src, repo+":v1")
		if err != nil {
			t.Fatal(err)
		}
		image, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedBestCompression))
		if err != nil {
			t.Fatal(err)
		}
		defer enc.Close()
		var victim artifact.Chunk
		var blob []byte
		for _, c := range p.Index.Chunks {
			if c.Hole() {
				continue
			}
			b := enc.EncodeAll(image[c.Offset:c.Offset+c.Length], nil)
			if pad := int(c.Size) - len(b) - 8; pad >= 0 {
				// A skippable frame: magic 0x184D2A50, little endian, then its length.
				skip := binary.LittleEndian.AppendUint32(nil, 0x184D2A50)
				skip = binary.LittleEndian.AppendUint32(skip, uint32(pad))
				victim, blob = c, append(append(skip, make([]byte, pad)...), b...)
				break
			}
		}
		if blob == nil {
			t.Fatal("no chunk recompresses smaller than it was pushed")
		}
		dec, _ := zstd.NewReader(nil)
		defer dec.Close()
		if got, err := dec.DecodeAll(blob, nil); err != nil || string(got) != string(image[victim.Offset:victim.Offset+victim.Length]) {
			t.Fatalf("the replacement blob does not decompress to the chunk: %v", err)
		}
		if err := os.WriteFile(reg.BlobPath(victim.Digest.Hex), blob, 0o644); err != nil {
			t.Fatal(err)
		}
		_, _, err = pullFile(t, repo+":v1", filepath.Join(t.TempDir(), "out"))
		var ce *artifact.ChunkError
		if !errors.Is(err, artifact.ErrCorrupt) || !errors.As(err, &ce) || ce.Digest != victim.Digest {
			t.Fatalf("pull of a blob with another digest: %v; want ErrCorrupt in a ChunkError for %s", err, victim.Digest)
		}
	})
}

// TestContentDigest pushes an artifact whose index swaps the blobs of two chunks (each
// blob is intact and listed once, so the index is valid): each decompresses to the other
// chunk's bytes, and the fetch must fail on the content digest.
func TestContentDigest(t *testing.T) {
	reg := registrytest.GGCR(t)
	ctx := context.Background()
	src := buildImage(t, t.TempDir(), 5)
	repo := reg.Host + "/rootfs"
	p, err := artifact.PushFile(ctx, src, repo+":v1")
	if err != nil {
		t.Fatal(err)
	}
	x := *p.Index
	x.Chunks = append([]artifact.Chunk{}, x.Chunks...)
	var data []int
	for i, c := range x.Chunks {
		if !c.Hole() && c.Length == artifact.ChunkSize {
			data = append(data, i)
		}
	}
	if len(data) < 2 {
		t.Fatalf("%d full data chunks, want 2", len(data))
	}
	a, b := &x.Chunks[data[0]], &x.Chunks[data[1]]
	a.Digest, a.Size, b.Digest, b.Size = b.Digest, b.Size, a.Digest, a.Size
	bad := putIndex(t, p, &x, repo+":swapped")
	_, _, err = pullFile(t, bad, filepath.Join(t.TempDir(), "out"))
	var ce *artifact.ChunkError
	if !errors.Is(err, artifact.ErrCorrupt) || !errors.As(err, &ce) {
		t.Fatalf("pull of swapped chunks: %v; want ErrCorrupt in a ChunkError", err)
	}
	if ce.Offset != a.Offset && ce.Offset != b.Offset {
		t.Errorf("the error names the chunk at %d, want %d or %d", ce.Offset, a.Offset, b.Offset)
	}
}

// putIndex puts a copy of p's manifest with x as its chunk index under ref, and returns
// the copy's reference.
func putIndex(t *testing.T, p *artifact.Pushed, x *artifact.Index, ref string) string {
	t.Helper()
	raw, err := x.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := artifact.ParseIndex(raw); err != nil {
		t.Fatalf("the changed index does not parse: %v", err)
	}
	cfg := static.NewLayer(raw, artifact.IndexMediaType)
	if err := remote.WriteLayer(p.Ref.Context(), cfg); err != nil {
		t.Fatal(err)
	}
	d, err := remote.Get(p.Ref)
	if err != nil {
		t.Fatal(err)
	}
	var m v1.Manifest
	if err := json.Unmarshal(d.Manifest, &m); err != nil {
		t.Fatal(err)
	}
	m.Config.Digest, _ = cfg.Digest()
	m.Config.Size = int64(len(raw))
	m.Layers = x.Blobs()
	mraw, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Put(r, rawManifest(mraw)); err != nil {
		t.Fatal(err)
	}
	return ref
}

// rawManifest is an OCI image manifest to put as it is.
type rawManifest []byte

func (m rawManifest) RawManifest() ([]byte, error)        { return m, nil }
func (m rawManifest) MediaType() (types.MediaType, error) { return types.OCIManifestSchema1, nil }

// TestFetchConcurrentWrites fetches into a writer whose WriteAt waits, up to a minute,
// for a second WriteAt to be running at the same time: chunks are written concurrently,
// not one at a time. The image still arrives whole.
func TestFetchConcurrentWrites(t *testing.T) {
	reg := registrytest.GGCR(t)
	ctx := context.Background()
	src := buildImage(t, t.TempDir(), 6)
	if _, err := artifact.PushFile(ctx, src, reg.Host+"/rootfs:v1"); err != nil {
		t.Fatal(err)
	}
	a, err := artifact.Open(ctx, reg.Host+"/rootfs:v1")
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(filepath.Join(t.TempDir(), "out"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(a.Size()); err != nil {
		t.Fatal(err)
	}
	w := &meetingWriter{f: f, met: make(chan struct{})}
	if _, err := a.Fetch(ctx, w); err != nil {
		t.Fatal(err)
	}
	if w.max < 2 {
		t.Errorf("at most %d WriteAt calls ran at once, want 2", w.max)
	}
	got, _ := os.ReadFile(f.Name())
	want, _ := os.ReadFile(src)
	if string(got) != string(want) {
		t.Error("fetched image differs from the pushed one")
	}
}

// meetingWriter writes to f; its first WriteAt waits until a second one runs beside it
// (or a minute has passed, when writes are serial), and it records the most calls that
// ran at once.
type meetingWriter struct {
	f        *os.File
	mu       sync.Mutex
	running  int
	max      int
	met      chan struct{}
	metOnce  sync.Once
	waitOnce sync.Once
}

func (w *meetingWriter) WriteAt(p []byte, off int64) (int, error) {
	w.mu.Lock()
	w.running++
	w.max = max(w.max, w.running)
	if w.running >= 2 {
		w.metOnce.Do(func() { close(w.met) })
	}
	w.mu.Unlock()
	w.waitOnce.Do(func() {
		select {
		case <-w.met:
		case <-time.After(time.Minute):
		}
	})
	n, err := w.f.WriteAt(p, off)
	w.mu.Lock()
	w.running--
	w.mu.Unlock()
	return n, err
}
