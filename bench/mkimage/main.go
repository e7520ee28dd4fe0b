// Command mkimage turns prepared root-filesystem directories into a multi-layer OCI image
// layout, one gzip (or zstd) layer per directory, for the end-to-end benchmarks.
//
//	mkimage -out DIR -tag NAME [-compression gzip|zstd] -layer DIR[,whiteouts=FILE] ... [-summary FILE]
//
// A layer "gen:zeros=SIZE" is generated instead of read: one file of SIZE bytes, zeros
// stored dense but for 4 KiB of random bytes every 64 MiB; "gen:random=SIZE" one file of
// random bytes; "gen:dir=N" one directory of N empty files (SIZE in bytes, or with a K, M
// or G suffix). The random bytes come from a fixed seed.
//
// Each layer directory is written as a tar in byte order of names, without a "./" prefix,
// with hard links kept (by device and inode), numeric owners, second-resolution
// modification times and SCHILY.xattr records, as BuildKit-made layers look. A whiteouts
// file lists lines "wh PATH" (hide PATH of a lower layer) and "opq DIR" (hide all lower
// children of DIR); the parent directory of each must exist in the layer directory. The
// output depends only on the input trees.
package main

import (
	"archive/tar"
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"
)

type layerSpec struct {
	dir       string
	whiteouts string
}

type layerFlags []layerSpec

func (l *layerFlags) String() string { return fmt.Sprint(*l) }

func (l *layerFlags) Set(v string) error {
	dir, rest, _ := strings.Cut(v, ",")
	s := layerSpec{dir: dir}
	if rest != "" {
		wh, ok := strings.CutPrefix(rest, "whiteouts=")
		if !ok {
			return fmt.Errorf("layer option %q: want whiteouts=FILE", rest)
		}
		s.whiteouts = wh
	}
	*l = append(*l, s)
	return nil
}

// layerStat is one line of the summary.
type layerStat struct {
	Dir          string `json:"dir"`
	Entries      int    `json:"entries"`
	Whiteouts    int    `json:"whiteouts"`
	Files        int    `json:"files"`
	Uncompressed int64  `json:"uncompressed_bytes"`
	Compressed   int64  `json:"compressed_bytes"`
	Digest       string `json:"digest"`
	DiffID       string `json:"diff_id"`
}

type summary struct {
	Ref          string      `json:"ref"`
	Layers       []layerStat `json:"layers"`
	Entries      int         `json:"entries"`
	Uncompressed int64       `json:"uncompressed_bytes"`
	Compressed   int64       `json:"compressed_bytes"`
	Manifest     string      `json:"manifest_digest"`
}

// compression is the -compression flag.
var compression = "gzip"

// created is the fixed creation time written in the config, so the image digest depends
// only on the trees.
var created = time.Date(2025, 5, 20, 0, 0, 0, 0, time.UTC)

func main() {
	var (
		layers  layerFlags
		out     = flag.String("out", "", "OCI layout directory to (re)create")
		tag     = flag.String("tag", "bench", "org.opencontainers.image.ref.name of the image")
		blobs   = flag.String("blobs", "", "directory for the compressed layers (default OUT.blobs)")
		sumFile = flag.String("summary", "", "write a JSON summary of the layers here")
		jobs    = flag.Int("jobs", 2, "layers to compress in parallel")
		comp    = flag.String("compression", "gzip", "layer compression: gzip or zstd")
	)
	flag.Var(&layers, "layer", "layer directory, bottom first: DIR[,whiteouts=FILE] (repeatable)")
	flag.Parse()
	if *out == "" || len(layers) == 0 {
		flag.Usage()
		os.Exit(2)
	}
	if *blobs == "" {
		*blobs = *out + ".blobs"
	}
	if *comp != "gzip" && *comp != "zstd" {
		fmt.Fprintln(os.Stderr, "mkimage: -compression: want gzip or zstd")
		os.Exit(2)
	}
	compression = *comp
	if err := run(*out, *tag, *blobs, *sumFile, *jobs, layers); err != nil {
		fmt.Fprintln(os.Stderr, "mkimage:", err)
		os.Exit(1)
	}
}

func run(out, tag, blobs, sumFile string, jobs int, specs []layerSpec) error {
	if err := os.MkdirAll(blobs, 0o755); err != nil {
		return err
	}
	stats := make([]layerStat, len(specs))
	var g errgroup.Group
	g.SetLimit(jobs)
	for i, s := range specs {
		g.Go(func() error {
			st, err := writeLayer(filepath.Join(blobs, fmt.Sprintf("layer%d.tar.%s", i+1, compression)), s)
			if err != nil {
				return fmt.Errorf("layer %d (%s): %w", i+1, s.dir, err)
			}
			stats[i] = st
			fmt.Fprintf(os.Stderr, "layer %d %s: %d entries, %d MiB -> %d MiB\n", i+1, s.dir,
				st.Entries, st.Uncompressed>>20, st.Compressed>>20)
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}

	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	for i := range specs {
		name := filepath.Join(blobs, fmt.Sprintf("layer%d.tar.%s", i+1, compression))
		mt := types.OCILayer
		if compression == "zstd" {
			mt = types.OCILayerZStd
		}
		l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return os.Open(name) },
			tarball.WithMediaType(mt))
		if err != nil {
			return err
		}
		if img, err = mutate.Append(img, mutate.Addendum{
			Layer:   l,
			History: v1.History{Created: v1.Time{Time: created}, CreatedBy: "mkimage " + filepath.Base(specs[i].dir)},
		}); err != nil {
			return err
		}
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return err
	}
	cf = cf.DeepCopy()
	cf.Architecture, cf.OS = "amd64", "linux"
	cf.Created = v1.Time{Time: created}
	cf.Config.Cmd = []string{"/bin/bash"}
	cf.Config.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return err
	}

	if err := os.RemoveAll(out); err != nil {
		return err
	}
	p, err := layout.Write(out, empty.Index)
	if err != nil {
		return err
	}
	if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{
		"org.opencontainers.image.ref.name": tag,
	})); err != nil {
		return err
	}
	d, err := img.Digest()
	if err != nil {
		return err
	}
	sum := summary{Ref: tag, Layers: stats, Manifest: d.String()}
	for _, s := range stats {
		sum.Entries += s.Entries
		sum.Uncompressed += s.Uncompressed
		sum.Compressed += s.Compressed
	}
	fmt.Fprintf(os.Stderr, "image %s: %d layers, %d entries, %d MiB uncompressed, %d MiB compressed\n",
		d, len(stats), sum.Entries, sum.Uncompressed>>20, sum.Compressed>>20)
	if sumFile != "" {
		b, err := json.MarshalIndent(sum, "", "  ")
		if err != nil {
			return err
		}
		return os.WriteFile(sumFile, append(b, '\n'), 0o644)
	}
	return nil
}

// countWriter counts and hashes what passes through it.
type countWriter struct {
	h hash.Hash
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	c.h.Write(p)
	c.n += int64(len(p))
	return len(p), nil
}

func writeLayer(name string, s layerSpec) (st layerStat, err error) {
	st.Dir = s.dir
	wh, err := readWhiteouts(s.whiteouts)
	if err != nil {
		return st, err
	}
	f, err := os.Create(name)
	if err != nil {
		return st, err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}()
	comp := &countWriter{h: sha256.New()}
	bw := bufio.NewWriterSize(io.MultiWriter(f, comp), 1<<20)
	var zw io.WriteCloser
	if compression == "zstd" {
		zw, err = zstd.NewWriter(bw, zstd.WithEncoderLevel(zstd.SpeedDefault))
	} else {
		zw, err = gzip.NewWriterLevel(bw, gzip.DefaultCompression)
	}
	if err != nil {
		return st, err
	}
	raw := &countWriter{h: sha256.New()}
	tw := tar.NewWriter(io.MultiWriter(zw, raw))
	w := &walker{tw: tw, root: s.dir, wh: wh, links: map[[2]uint64]string{}, st: &st, buf: make([]byte, 1<<20)}
	if gen, ok := strings.CutPrefix(s.dir, "gen:"); ok {
		err = w.generate(gen)
	} else {
		err = w.dir("", true)
	}
	if err != nil {
		return st, err
	}
	for d := range wh {
		return st, fmt.Errorf("whiteouts under %q: parent directory not in the layer", d)
	}
	if err := tw.Close(); err != nil {
		return st, err
	}
	if err := zw.Close(); err != nil {
		return st, err
	}
	if err := bw.Flush(); err != nil {
		return st, err
	}
	st.Uncompressed, st.Compressed = raw.n, comp.n
	st.DiffID = "sha256:" + hex.EncodeToString(raw.h.Sum(nil))
	st.Digest = "sha256:" + hex.EncodeToString(comp.h.Sum(nil))
	return st, nil
}

// whiteouts maps a directory ("" for the root) to the names to hide in it; the name
// ".wh..wh..opq" marks the directory opaque.
type whiteouts map[string][]string

func readWhiteouts(name string) (whiteouts, error) {
	wh := whiteouts{}
	if name == "" {
		return wh, nil
	}
	b, err := os.ReadFile(name)
	if err != nil {
		return nil, err
	}
	for i, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		kind, p, ok := strings.Cut(line, " ")
		p = strings.Trim(path.Clean("/"+strings.TrimSpace(p)), "/")
		if !ok || p == "" {
			return nil, fmt.Errorf("%s:%d: want \"wh PATH\" or \"opq DIR\"", name, i+1)
		}
		switch kind {
		case "wh":
			dir, base := path.Split(p)
			dir = strings.TrimSuffix(dir, "/")
			wh[dir] = append(wh[dir], ".wh."+base)
		case "opq":
			wh[p] = append(wh[p], ".wh..wh..opq")
		default:
			return nil, fmt.Errorf("%s:%d: unknown kind %q", name, i+1, kind)
		}
	}
	return wh, nil
}

type walker struct {
	tw    *tar.Writer
	root  string
	wh    whiteouts
	links map[[2]uint64]string
	st    *layerStat
	buf   []byte
}

func (w *walker) header(rel string, fi fs.FileInfo) (*tar.Header, error) {
	full := filepath.Join(w.root, rel)
	link := ""
	if fi.Mode()&fs.ModeSymlink != 0 {
		var err error
		if link, err = os.Readlink(full); err != nil {
			return nil, err
		}
	}
	hdr, err := tar.FileInfoHeader(fi, link)
	if err != nil {
		return nil, err
	}
	hdr.Name = rel
	if fi.IsDir() {
		hdr.Name += "/"
	}
	hdr.Uname, hdr.Gname = "", ""
	hdr.ModTime = hdr.ModTime.Truncate(time.Second)
	hdr.AccessTime, hdr.ChangeTime = time.Time{}, time.Time{}
	if sys, ok := fi.Sys().(*syscall.Stat_t); ok && fi.Mode().IsRegular() && sys.Nlink > 1 {
		key := [2]uint64{sys.Dev, sys.Ino}
		if first, ok := w.links[key]; ok {
			hdr.Typeflag, hdr.Linkname, hdr.Size = tar.TypeLink, first, 0
		} else {
			w.links[key] = rel
		}
	}
	if err := w.xattrs(full, hdr); err != nil {
		return nil, err
	}
	return hdr, nil
}

func (w *walker) xattrs(full string, hdr *tar.Header) error {
	sz, err := unix.Llistxattr(full, nil)
	if err != nil || sz == 0 {
		if errors.Is(err, unix.ENOTSUP) {
			err = nil
		}
		return err
	}
	list := make([]byte, sz)
	if sz, err = unix.Llistxattr(full, list); err != nil {
		return err
	}
	names := strings.Split(strings.TrimRight(string(list[:sz]), "\x00"), "\x00")
	slices.Sort(names)
	for _, n := range names {
		if n == "" {
			continue
		}
		val := make([]byte, 64<<10)
		vs, err := unix.Lgetxattr(full, n, val)
		if err != nil {
			return fmt.Errorf("xattr %s of %s: %w", n, full, err)
		}
		if hdr.PAXRecords == nil {
			hdr.PAXRecords = map[string]string{}
		}
		hdr.PAXRecords["SCHILY.xattr."+n] = string(val[:vs])
	}
	return nil
}

// dir writes the entries below rel (and rel itself unless it is the root), in byte order
// of names, each directory's whiteouts right after its own header.
func (w *walker) dir(rel string, isRoot bool) error {
	full := filepath.Join(w.root, rel)
	if !isRoot {
		fi, err := os.Lstat(full)
		if err != nil {
			return err
		}
		hdr, err := w.header(rel, fi)
		if err != nil {
			return err
		}
		if err := w.write(hdr, ""); err != nil {
			return err
		}
	}
	for _, name := range w.wh[rel] {
		if err := w.write(&tar.Header{
			Typeflag: tar.TypeReg, Name: path.Join(rel, name), Mode: 0o644, ModTime: created,
		}, ""); err != nil {
			return err
		}
		w.st.Whiteouts++
	}
	delete(w.wh, rel)
	ents, err := os.ReadDir(full)
	if err != nil {
		return err
	}
	// os.ReadDir sorts by name in byte order.
	for _, e := range ents {
		child := path.Join(rel, e.Name())
		if e.IsDir() {
			if err := w.dir(child, false); err != nil {
				return err
			}
			continue
		}
		fi, err := e.Info()
		if err != nil {
			return err
		}
		if fi.Mode()&fs.ModeSocket != 0 {
			continue
		}
		hdr, err := w.header(child, fi)
		if err != nil {
			return err
		}
		if err := w.write(hdr, filepath.Join(w.root, child)); err != nil {
			return err
		}
	}
	return nil
}

func (w *walker) write(hdr *tar.Header, body string) error {
	if err := w.tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("write header %s: %w", hdr.Name, err)
	}
	w.st.Entries++
	if hdr.Typeflag != tar.TypeReg || hdr.Size == 0 || body == "" {
		return nil
	}
	w.st.Files++
	f, err := os.Open(body)
	if err != nil {
		return err
	}
	defer f.Close()
	n, err := io.CopyBuffer(w.tw, io.LimitReader(f, hdr.Size), w.buf)
	if err == nil && n != hdr.Size {
		err = fmt.Errorf("%s changed size while being read", body)
	}
	return err
}

// generate writes a generated layer: "zeros=SIZE", "random=SIZE" or "dir=N".
func (w *walker) generate(spec string) error {
	kind, arg, _ := strings.Cut(spec, "=")
	n, err := parseSize(arg)
	if err != nil {
		return fmt.Errorf("gen:%s: %w", spec, err)
	}
	rnd := rand.NewChaCha8([32]byte{1})
	file := func(name string, size int64, body func(b []byte, off int64)) error {
		hdr := &tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: size, ModTime: created}
		if err := w.tw.WriteHeader(hdr); err != nil {
			return err
		}
		w.st.Entries++
		w.st.Files++
		for off := int64(0); off < size; {
			b := w.buf[:min(int64(len(w.buf)), size-off)]
			body(b, off)
			if _, err := w.tw.Write(b); err != nil {
				return err
			}
			off += int64(len(b))
		}
		return nil
	}
	switch kind {
	case "zeros":
		// 4 KiB of random bytes at the start of every 64 MiB, zeros elsewhere; w.buf is
		// 1 MiB, so a buffer starts a 64 MiB stretch when off is a multiple of it.
		clear(w.buf)
		return file("zeros.img", n, func(b []byte, off int64) {
			if off%(64<<20) == 0 {
				rnd.Read(b[:min(4096, len(b))])
			} else if off%(64<<20) == 1<<20 {
				clear(b[:min(4096, len(b))])
			}
		})
	case "random":
		return file("random.bin", n, func(b []byte, _ int64) { rnd.Read(b) })
	case "dir":
		if err := w.tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: "many/", Mode: 0o755, ModTime: created}); err != nil {
			return err
		}
		w.st.Entries++
		for i := range n {
			if err := file(fmt.Sprintf("many/file-%06d", i), 0, nil); err != nil {
				return err
			}
		}
		return nil
	}
	return fmt.Errorf("gen:%s: want zeros=SIZE, random=SIZE or dir=N", spec)
}

// parseSize parses a byte count with an optional K, M or G suffix (powers of 1024).
func parseSize(s string) (int64, error) {
	mult := int64(1)
	switch {
	case strings.HasSuffix(s, "K"):
		mult = 1 << 10
	case strings.HasSuffix(s, "M"):
		mult = 1 << 20
	case strings.HasSuffix(s, "G"):
		mult = 1 << 30
	}
	n, err := strconv.ParseInt(strings.TrimRight(s, "KMG"), 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("size %q: want a number of bytes with an optional K, M or G", s)
	}
	return n * mult, nil
}
