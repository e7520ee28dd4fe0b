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

// read reads a stream the two ways a layer can be read: straight, and spooled ahead.
func read(t *testing.T, spooled bool, l v1.Layer, diffID v1.Hash, opts ...layerstream.Option) ([]byte, error) {
	t.Helper()
	ctx := context.Background()
	var st *layerstream.Stream
	var err error
	if spooled {
		sp := layerstream.StartSpool(ctx, l, diffID, layerstream.WithTempDir(t.TempDir()))
		defer sp.Close()
		st, err = sp.Open(ctx, opts...)
	} else {
		st, err = layerstream.Open(ctx, l, diffID, opts...)
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
		for _, spooled := range []bool{false, true} {
			name := tc.name
			if spooled {
				name += "/spooled"
			}
			t.Run(name, func(t *testing.T) {
				l := static.NewLayer(tc.blob, tc.mt)
				var events []progress.Event
				got, err := read(t, spooled, l, tc.diffID, layerstream.WithProgress(func(ev progress.Event) { events = append(events, ev) }, progress.Event{Phase: progress.PhaseApply, Layer: 7}))
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
					if ev.Complete || (spooled && ev.Total != int64(len(plain))) || (!spooled && ev.Total != -1) {
						t.Errorf("intermediate event %+v", ev)
					}
				}
			})
		}
	}
}

func TestStreamLimit(t *testing.T) {
	plain := layerTar(t)
	for _, spooled := range []bool{false, true} {
		l := static.NewLayer(gz(plain), types.OCILayer)
		// The budget spans layers: what earlier layers used counts against it.
		_, err := read(t, spooled, l, hashOf(plain), layerstream.WithLimit(int64(len(plain))+100, 200))
		var le *layerstream.LimitError
		if !errors.Is(err, layerstream.ErrLimit) || !errors.As(err, &le) || le.Limit != int64(len(plain))+100 {
			t.Errorf("spooled=%v: err = %v, want a LimitError", spooled, err)
		}
		if _, err := read(t, spooled, l, hashOf(plain), layerstream.WithLimit(int64(len(plain))+100, 100)); err != nil {
			t.Errorf("spooled=%v: exactly at the limit: %v", spooled, err)
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

	// A spool stops with its context, and Open gives up when its own ends.
	ctx, cancel = context.WithCancel(context.Background())
	sp := layerstream.StartSpool(ctx, l, hashOf(plain), layerstream.WithTempDir(t.TempDir()))
	cancel()
	defer sp.Close()
	if _, err := sp.Open(context.Background()); err != nil && !errors.Is(err, context.Canceled) {
		t.Errorf("open a cancelled spool: %v", err)
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
