package layerstream_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/img2ext4/img2ext4/internal/tartest"
	"github.com/img2ext4/img2ext4/layerstream"
	"github.com/img2ext4/img2ext4/progress"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

func gz(b []byte) []byte {
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	w.Write(b)
	w.Close()
	return buf.Bytes()
}

func zst(b []byte) []byte {
	var buf bytes.Buffer
	w, _ := zstd.NewWriter(&buf)
	w.Write(b)
	w.Close()
	return buf.Bytes()
}

func hashOf(b []byte) v1.Hash {
	h, _, _ := v1.SHA256(bytes.NewReader(b))
	return h
}

// layerTar is a small real tar, big enough to span several read-ahead chunks.
func layerTar(t *testing.T) []byte {
	return tartest.Tar(tartest.File("big", string(bytes.Repeat([]byte("0123456789abcdef"), 300_000))), tartest.File("small", "x"))
}

// The ways a layer can be read.
const (
	direct   = "direct"   // Open
	pipeline = "pipeline" // a Pipeline, as the first layer
	spooled  = "spooled"  // a Pipeline with no memory budget, as the second layer, read once decoded
)

var modes = []string{direct, pipeline, spooled}

// read reads a layer in one of the modes.
func read(t *testing.T, mode string, l v1.Layer, diffID v1.Hash, opts ...layerstream.Option) (b []byte, err error) {
	t.Helper()
	ctx := context.Background()
	var st *layerstream.Stream
	switch mode {
	case direct:
		st, err = layerstream.Open(ctx, l, diffID, opts...)
	case pipeline:
		p, perr := layerstream.NewPipeline(ctx, []v1.Layer{l}, []v1.Hash{diffID}, layerstream.WithTempDir(t.TempDir()))
		if perr != nil {
			t.Fatal(perr)
		}
		defer p.Close()
		st, err = p.Open(ctx, 0, opts...)
	case spooled:
		first := static.NewLayer(gz(nil), types.OCILayer)
		p, perr := layerstream.NewPipeline(ctx, []v1.Layer{first, l}, []v1.Hash{hashOf(nil), diffID},
			layerstream.WithTempDir(t.TempDir()), layerstream.WithMemory(0), layerstream.WithJobs(2), layerstream.WithDisk(1<<30))
		if perr != nil {
			t.Fatal(perr)
		}
		defer p.Close()
		n, _ := layerstream.WaitDecoded(p, 1)
		st, err = p.Open(ctx, 1, opts...)
		if err == nil {
			defer func() {
				if n == 0 && err == nil {
					t.Errorf("a verified layer, but nothing spooled to disk")
				}
			}()
		}
	}
	if err != nil {
		return nil, err
	}
	defer st.Close()
	return io.ReadAll(st)
}

func TestStream(t *testing.T) {
	plain := layerTar(t)
	good := hashOf(plain)
	wrong := hashOf([]byte("something else"))
	for _, tc := range []struct {
		name    string
		blob    []byte
		mt      types.MediaType
		diffID  v1.Hash
		wantErr error
	}{
		{"gzip", gz(plain), types.OCILayer, good, nil},
		{"zstd", zst(plain), types.OCILayerZStd, good, nil},
		{"plain", plain, types.OCIUncompressedLayer, good, nil},
		{"gzip bytes under a zstd media type", gz(plain), types.OCILayerZStd, good, nil},
		{"plain bytes under a gzip media type", plain, types.DockerLayer, good, nil},
		{"gzip wrong diffid", gz(plain), types.OCILayer, wrong, layerstream.ErrDiffIDMismatch},
		{"zstd wrong diffid", zst(plain), types.OCILayerZStd, wrong, layerstream.ErrDiffIDMismatch},
		{"plain wrong diffid", plain, types.OCIUncompressedLayer, wrong, layerstream.ErrDiffIDMismatch},
		{"trailing bytes after the gzip stream are hashed", gz(append(append([]byte{}, plain...), "junk"...)), types.OCILayer, good, layerstream.ErrDiffIDMismatch},
		{"bzip2 media type", plain, "application/vnd.oci.image.layer.v1.tar+bzip2", good, layerstream.ErrUnsupportedCompression},
	} {
		for _, mode := range modes {
			t.Run(tc.name+"/"+mode, func(t *testing.T) {
				l := static.NewLayer(tc.blob, tc.mt)
				var events []progress.Event
				got, err := read(t, mode, l, tc.diffID, layerstream.WithProgress(func(ev progress.Event) { events = append(events, ev) }, progress.Event{Phase: progress.PhaseApply, Layer: 7}))
				if tc.wantErr != nil {
					if !errors.Is(err, tc.wantErr) {
						t.Fatalf("err = %v, want %v", err, tc.wantErr)
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, plain) {
					t.Fatalf("read %d bytes, want the %d of the tar", len(got), len(plain))
				}
				// Progress counts uncompressed bytes, whatever the blob's compression and
				// whether the layer was spooled; the last event is complete and exact.
				last := events[len(events)-1]
				if !last.Complete || last.Done != int64(len(plain)) || last.Total != int64(len(plain)) || last.Layer != 7 {
					t.Errorf("last event %+v, want complete with Done = Total = %d", last, len(plain))
				}
				for _, ev := range events[:len(events)-1] {
					if ev.Complete || (mode == spooled && ev.Total != int64(len(plain))) || (mode == direct && ev.Total != -1) ||
						(ev.Total != -1 && ev.Total != int64(len(plain))) {
						t.Errorf("intermediate event %+v", ev)
					}
				}
			})
		}
	}
}

func TestStreamLimit(t *testing.T) {
	plain := layerTar(t)
	for _, mode := range modes {
		l := static.NewLayer(gz(plain), types.OCILayer)
		// The budget spans layers: what earlier layers used counts against it.
		_, err := read(t, mode, l, hashOf(plain), layerstream.WithLimit(int64(len(plain))+100, 200))
		var le *layerstream.LimitError
		if !errors.Is(err, layerstream.ErrLimit) || !errors.As(err, &le) || le.Limit != int64(len(plain))+100 {
			t.Errorf("%s: err = %v, want a LimitError", mode, err)
		}
		if _, err := read(t, mode, l, hashOf(plain), layerstream.WithLimit(int64(len(plain))+100, 100)); err != nil {
			t.Errorf("%s: exactly at the limit: %v", mode, err)
		}
	}
}

func TestStreamCancel(t *testing.T) {
	plain := layerTar(t)
	l := static.NewLayer(gz(plain), types.OCILayer)
	ctx, cancel := context.WithCancel(context.Background())
	st, err := layerstream.Open(ctx, l, hashOf(plain))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := io.ReadFull(st, make([]byte, 10)); err != nil {
		t.Fatal(err)
	}
	cancel()
	if _, err := io.Copy(io.Discard, st); !errors.Is(err, context.Canceled) {
		t.Errorf("read after cancel: %v, want context.Canceled", err)
	}

	// A pipeline stops with its context: its stream fails with the context's error.
	ctx, cancel = context.WithCancel(context.Background())
	p, err := layerstream.NewPipeline(ctx, []v1.Layer{l}, []v1.Hash{hashOf(plain)}, layerstream.WithTempDir(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	cancel()
	st, err = p.Open(context.Background(), 0)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := io.Copy(io.Discard, st); !errors.Is(err, context.Canceled) {
		t.Errorf("read a cancelled pipeline: %v, want context.Canceled", err)
	}
}

func TestDecompress(t *testing.T) {
	plain := []byte("hello, layer")
	for _, blob := range [][]byte{gz(plain), zst(plain), plain} {
		if c := layerstream.Sniff(blob); c.String() == "" {
			t.Fatal("no name")
		}
		rc, err := layerstream.Decompress(bytes.NewReader(blob))
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || !bytes.Equal(got, plain) {
			t.Errorf("%s: got %q, %v", layerstream.Sniff(blob), got, err)
		}
	}
}
