package ocifetch

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/img2ext4/img2ext4/progress"
)

// TestLocalInPlace prefetches images from an OCI layout, an oci-archive and
// a docker-archive and reads their layers: nothing is created in the temp
// dir or the blob cache, the process writes far less than the blobs' size,
// and the blobs are read where they lie, at read time (a byte changed on
// disk after Prefetch is seen, and refused as a digest mismatch). Progress
// reports each layer once as local, complete, never as downloading.
func TestLocalInPlace(t *testing.T) {
	base := t.TempDir()
	img := randomImage(t, 1<<20, 3, nil)
	layout := filepath.Join(base, "layout")
	writeLayout(t, layout, []v1.Image{img}, []string{""})
	ociArchive := filepath.Join(base, "oci.tar")
	tarDir(t, layout, ociArchive)
	dockerArchive := filepath.Join(base, "docker.tar")
	tag, _ := name.NewTag("example.com/a:v1")
	if err := tarball.WriteToFile(dockerArchive, tag, img); err != nil {
		t.Fatal(err)
	}
	wantLayers, _ := img.Layers()
	blobs := readLayers(t, wantLayers)
	var total int64
	for _, b := range blobs {
		total += int64(len(b))
	}

	for _, tc := range []struct {
		name, ref string
		file      func(i int) string // the file holding layer i
	}{
		{"oci", "oci:" + layout, func(i int) string {
			return filepath.Join(layout, "blobs", "sha256", mustDigest(t, wantLayers[i]).Hex)
		}},
		{"oci-archive", "oci-archive:" + ociArchive, func(int) string { return ociArchive }},
		{"docker-archive", "docker-archive:" + dockerArchive, func(int) string { return dockerArchive }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tmp := t.TempDir()
			cache := filepath.Join(t.TempDir(), "cache")
			var (
				mu     sync.Mutex
				events []progress.Event
			)
			opts := []Option{WithTempDir(tmp), WithBlobCache(cache)}
			w0 := writtenBytes()
			got, err := Image(ctxBG, tc.ref, opts...)
			if err != nil {
				t.Fatal(err)
			}
			p, err := Prefetch(ctxBG, got, append(opts, WithProgress(func(ev progress.Event) {
				mu.Lock()
				events = append(events, ev)
				mu.Unlock()
			}))...)
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			defer func() {
				p.Close() // waits for the reports
				mu.Lock()
				defer mu.Unlock()
				if len(events) != len(wantLayers) {
					t.Errorf("%d progress events for %d layers: %+v", len(events), len(wantLayers), events)
				}
				for _, ev := range events {
					size := int64(len(blobs[ev.Layer]))
					if ev.Phase != progress.PhaseLocal || !ev.Complete || ev.Done != size || ev.Total != size ||
						ev.Digest != mustDigest(t, wantLayers[ev.Layer]).String() || ev.BytesPerSec != 0 {
						t.Errorf("progress event %+v, want one complete %s event with done=total=%d", ev, progress.PhaseLocal, size)
					}
				}
			}()
			if left := dirEntries(t, tmp); len(left) != 0 {
				t.Errorf("Prefetch created %v in the temp dir", left)
			}
			sameLayers(t, img, p.Layers())
			if w := writtenBytes() - w0; w0 >= 0 && w > total/8 {
				t.Errorf("resolving and reading %d bytes of blobs wrote %d bytes", total, w)
			}
			if left := dirEntries(t, tmp); len(left) != 0 {
				t.Errorf("reading the layers created %v in the temp dir", left)
			}
			if _, err := os.Stat(cache); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("a local source used the blob cache: %v", err)
			}

			// Change one byte of the second layer's blob where it lies.
			f, err := os.OpenFile(tc.file(1), os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			data, err := os.ReadFile(tc.file(1))
			if err != nil {
				t.Fatal(err)
			}
			off := bytes.Index(data, blobs[1])
			if off < 0 {
				t.Fatal("layer blob not found in its file")
			}
			off += len(blobs[1]) / 2
			if _, err := f.WriteAt([]byte{data[off] ^ 0xff}, int64(off)); err != nil {
				t.Fatal(err)
			}
			f.Close()
			defer os.WriteFile(tc.file(1), data, 0o644)
			rc, err := p.Layers()[1].Compressed()
			if err != nil {
				t.Fatal(err)
			}
			_, err = io.Copy(io.Discard, rc)
			rc.Close()
			if !errors.Is(err, ErrDigestMismatch) {
				t.Errorf("reading a blob changed after Prefetch: %v, want a digest mismatch", err)
			}
		})
	}
}
