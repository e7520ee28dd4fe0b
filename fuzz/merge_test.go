package fuzz

import (
	"archive/tar"
	"context"
	"flag"
	"fmt"
	"hash/fnv"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/filesystem/ext4"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"

	img2ext4 "github.com/img2ext4/img2ext4"
	"github.com/img2ext4/img2ext4/internal/tartest"
	"github.com/img2ext4/img2ext4/internal/treesnap"
)

// mergeNames is a small name space, so that generated layers collide often: replacements,
// type changes, whiteouts of existing names, writes through symbolic links.
var mergeNames = []string{"a", "b", "c", "a/x", "a/y", "b/x", "a/x/z", "c/d"}

// mergeTargets are symbolic link targets: relative, absolute, climbing, dangling, the root.
var mergeTargets = []string{"a", "b", "/a", "../b", "a/x", "nowhere", ".", "/", "c/../a"}

var mergePerms = []uint32{0o755, 0o644, 0o600, 0o700, 0o4755, 0o2750, 0o1777, 0o000, 0o555}

var mergeOwners = [][2]int{{0, 0}, {1, 1}, {1000, 100}, {65534, 65534}}

// mergeProgram decodes data into layers of tar members, four bytes a member, and applies
// each to the model as it goes (hard links pick their target among the names that exist
// at that point). It returns the layers and the model's verdict.
func mergeProgram(data []byte) (layers [][]tartest.Entry, m *model, merr error) {
	m = newModel()
	layers = [][]tartest.Entry{nil}
	for i := 0; i+3 < len(data) && merr == nil; i += 4 {
		k, n, a, b := data[i], data[i+1], data[i+2], data[i+3]
		name := mergeNames[int(n)%len(mergeNames)]
		perm := mergePerms[int(a)%len(mergePerms)]
		own := mergeOwners[int(a>>4)%len(mergeOwners)]
		mtime := time.Unix(1_000_000_000+int64(b)*3600, 0)
		ino := &inode{perm: perm, uid: own[0], gid: own[1], mtime: mtime.Unix()}
		opts := []tartest.Opt{tartest.Mode(int64(perm)), tartest.Owner(own[0], own[1]), tartest.Mtime(mtime)}
		if b&0x80 != 0 {
			v := fmt.Sprintf("v%d", a)
			ino.xattrs = map[string]string{"user.k": v}
			opts = append(opts, tartest.Xattr("user.k", v))
		}
		var e tartest.Entry
		switch k % 10 {
		case 0, 9:
			ino.typ = 'f'
			ino.content = fmt.Sprintf("%d.%d;", len(layers), i)
			if k%10 == 9 {
				ino.content = strings.Repeat(ino.content, 1+int(a)*int(b)/16)
			}
			e = tartest.File(name, ino.content, opts...)
			merr = m.create(name, ino)
		case 1:
			ino.typ = 'd'
			e = tartest.Dir(name, opts...)
			merr = m.create(name, ino)
		case 2:
			ino = &inode{typ: 'l', uid: own[0], gid: own[1], mtime: mtime.Unix(), content: mergeTargets[int(a)%len(mergeTargets)]}
			e = tartest.Symlink(name, ino.content, tartest.Owner(own[0], own[1]), tartest.Mtime(mtime))
			merr = m.create(name, ino)
		case 3:
			var cands []string
			for p, nd := range m.nodes {
				if nd.ino.typ != 'd' {
					cands = append(cands, p)
				}
			}
			if len(cands) == 0 {
				continue
			}
			slices.Sort(cands)
			target := cands[int(a)%len(cands)]
			e = tartest.Link(name, target, tartest.Mtime(mtime))
			merr = m.link(name, target, mtime.Unix())
		case 4:
			e = tartest.Whiteout(name)
			merr = m.whiteout(name)
		case 5:
			dir := ""
			if a%4 != 0 {
				dir = name
			}
			e = tartest.Opaque(dir)
			merr = m.opaque(dir)
		case 6:
			if len(layers) < 5 {
				layers = append(layers, nil)
				m.layer++
			}
			continue
		case 7:
			ino.typ = 'p'
			ino.xattrs = nil
			e = tartest.Fifo(name, tartest.Mode(int64(perm)), tartest.Owner(own[0], own[1]), tartest.Mtime(mtime))
			merr = m.create(name, ino)
		case 8:
			ino.typ, ino.major, ino.minor, ino.xattrs = 'c', uint32(a%8), uint32(b), nil
			e = tartest.Char(name, int64(ino.major), int64(ino.minor), tartest.Mode(int64(perm)), tartest.Owner(own[0], own[1]), tartest.Mtime(mtime))
			merr = m.create(name, ino)
		}
		layers[len(layers)-1] = append(layers[len(layers)-1], e)
	}
	return layers, m, merr
}

// fuzzing reports whether this process is a fuzzing worker (go test -fuzz), as opposed to
// the normal test run of the seed corpus.
func fuzzing() bool {
	f := flag.Lookup("test.fuzzworker")
	return f != nil && f.Value.String() == "true"
}

// FuzzMerge generates multi-layer images (files, directories, symbolic links, hard links,
// FIFOs, devices, whiteouts, opaque markers, overwrites and type changes, with modes,
// owners, times and xattrs), converts each with the real conversion (img2ext4.Convert
// from an OCI layout) into all three outputs, and checks each against the reference model
// in model_test.go, which shares no code with layerapply or whiteout:
//
//   - dir: the tree read back with Lstat, readlink and getxattr (treesnap) equals the model;
//   - tar: the flattened tar read back with archive/tar equals the model;
//   - ext4: go-diskfs's reader gives the model's tree (types, permissions without the
//     special bits, owners, sizes, contents, link targets, devices, hard links, mtimes:
//     what go-diskfs can read), and e2fsck -fn finds nothing wrong. e2fsck runs on every
//     seed in the normal test run but, to keep campaigns fast, only on one input in 16
//     during fuzzing, chosen by a hash of the input so a failure reproduces.
//
// When the model refuses the layers, every conversion must fail too.
func FuzzMerge(f *testing.F) {
	if os.Geteuid() != 0 {
		f.Skip("FuzzMerge needs root: the directory output sets owners and makes devices")
	}
	e2fsck, _ := exec.LookPath("e2fsck")
	if e2fsck == "" {
		f.Log("e2fsck not found on PATH (Debian: apt-get install e2fsprogs): ext4 outputs are checked with go-diskfs only")
	}
	for _, s := range [][]byte{
		// file, dir, symlink; new layer; whiteout a lower file
		{0, 0, 1, 2, 1, 1, 3, 4, 2, 2, 0, 0, 6, 0, 0, 0, 4, 0, 0, 0},
		// dir a with children; next layer opaque a then a new child
		{1, 0, 0, 0, 0, 3, 1, 1, 0, 4, 2, 2, 6, 0, 0, 0, 1, 0, 0, 0, 5, 0, 1, 0, 0, 4, 3, 3},
		// hard links, then an overwrite of one name and a whiteout of the other
		{0, 1, 1, 1, 3, 2, 0, 0, 3, 0, 1, 0, 6, 0, 0, 0, 0, 1, 2, 2, 4, 2, 0, 0},
		// symlinked parent: b -> a, then b/x is written into a
		{1, 0, 0, 0, 2, 1, 0, 0, 6, 0, 0, 0, 0, 5, 1, 0x85},
		// a relative symlink in a subdirectory climbing out of it: a/x -> ../b, then a/x/z is b/z
		{1, 0, 0, 0, 2, 3, 3, 0, 0, 6, 0, 0},
		// type changes: file -> dir -> symlink -> fifo -> device
		{0, 0, 0, 0, 6, 0, 0, 0, 1, 0, 1, 0, 0, 3, 0, 0, 6, 0, 0, 0, 2, 0, 4, 0, 6, 0, 0, 0, 7, 0, 2, 0, 6, 0, 0, 0, 8, 0, 3, 9},
		// whiteout of a directory re-declared in the same layer keeps what the layer wrote
		{1, 0, 0, 0, 0, 3, 0, 0, 6, 0, 0, 0, 1, 0, 2, 0, 0, 4, 0, 0, 4, 0, 0, 0},
		// large bodies, modes with special bits, xattrs
		{9, 0, 40, 0xff, 1, 1, 4, 0x81, 9, 5, 0xff, 0x90, 6, 0, 0, 0, 9, 0, 7, 7},
		// symlink loop as a parent: refused
		{2, 0, 1, 0, 2, 1, 0, 0, 0, 3, 0, 0},
		// entry below a file: refused
		{0, 0, 0, 0, 0, 3, 0, 0},
		// opaque on the root, whiteout below a symlink (refused)
		{0, 0, 0, 0, 0, 1, 0, 0, 6, 0, 0, 0, 5, 0, 0, 0, 0, 2, 0, 0, 6, 0, 0, 0, 2, 0, 0, 0, 6, 0, 0, 0, 4, 5, 0, 0},
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 4*40 {
			return
		}
		layers, m, merr := mergeProgram(data)
		tars := make([][]byte, len(layers))
		for i, l := range layers {
			tars[i] = tartest.Tar(l...)
		}
		tmp := t.TempDir()
		lay := filepath.Join(tmp, "layout")
		p, err := layout.Write(lay, empty.Index)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.AppendImage(tartest.Image(tars...)); err != nil {
			t.Fatal(err)
		}
		ref := "oci:" + lay
		ctx := context.Background()
		outs := map[img2ext4.Format]string{
			img2ext4.FormatDir:  filepath.Join(tmp, "root"),
			img2ext4.FormatTar:  filepath.Join(tmp, "flat.tar"),
			img2ext4.FormatExt4: filepath.Join(tmp, "fs.img"),
		}
		errs := map[img2ext4.Format]error{}
		for _, fm := range []img2ext4.Format{img2ext4.FormatDir, img2ext4.FormatTar, img2ext4.FormatExt4} {
			_, errs[fm] = img2ext4.Convert(ctx, ref, outs[fm], img2ext4.WithFormat(fm), img2ext4.WithTempDir(tmp))
		}
		if merr != nil {
			for fm, err := range errs {
				if err == nil {
					t.Errorf("%s: converted, but the model refuses the layers: %v\n%s", fm, merr, describe(layers))
				}
			}
			return
		}
		for fm, err := range errs {
			if err != nil {
				t.Fatalf("%s: %v; the model merges the layers into\n%s\n%s", fm, err, strings.Join(m.lines(renderOpts{}), "\n"), describe(layers))
			}
		}
		compare(t, "dir", m.lines(renderOpts{}), dirLines(t, outs[img2ext4.FormatDir]), layers)
		compare(t, "tar", m.lines(renderOpts{}), tarLines(t, outs[img2ext4.FormatTar]), layers)
		compare(t, "ext4 (go-diskfs)", m.lines(renderOpts{noSpecial: true, noXattrs: true}), diskfsLines(t, outs[img2ext4.FormatExt4]), layers)
		h := fnv.New32a()
		h.Write(data)
		if e2fsck != "" && (!fuzzing() || h.Sum32()%16 == 0) {
			if out, err := exec.Command(e2fsck, "-fn", outs[img2ext4.FormatExt4]).CombinedOutput(); err != nil {
				t.Fatalf("e2fsck -fn: %v\n%s\n%s", err, out, describe(layers))
			}
		}
	})
}

// describe lists the layers' members, for failure messages.
func describe(layers [][]tartest.Entry) string {
	var b strings.Builder
	for i, l := range layers {
		fmt.Fprintf(&b, "layer %d:\n", i)
		for _, e := range l {
			h := e.Hdr
			fmt.Fprintf(&b, "  %c %s", h.Typeflag, h.Name)
			if h.Linkname != "" {
				fmt.Fprintf(&b, " -> %s", h.Linkname)
			}
			fmt.Fprintf(&b, " %04o %d:%d mtime=%d", h.Mode, h.Uid, h.Gid, h.ModTime.Unix())
			if len(h.PAXRecords) > 0 {
				fmt.Fprintf(&b, " %v", h.PAXRecords)
			}
			b.WriteByte('\n')
		}
	}
	return b.String()
}

func compare(t *testing.T, what string, want, got []string, layers [][]tartest.Entry) {
	t.Helper()
	if slices.Equal(want, got) {
		return
	}
	var d strings.Builder
	for _, l := range want {
		if !slices.Contains(got, l) {
			fmt.Fprintf(&d, "-model %s\n", l)
		}
	}
	for _, l := range got {
		if !slices.Contains(want, l) {
			fmt.Fprintf(&d, "+%s %s\n", what, l)
		}
	}
	t.Errorf("%s differs from the model:\n%s%s", what, d.String(), describe(layers))
}

// linkGroups names each inode shared by several names by its smallest path.
func linkGroups(ids map[string]string) map[string]string {
	byID := map[string][]string{}
	for p, id := range ids {
		byID[id] = append(byID[id], p)
	}
	out := map[string]string{}
	for _, ps := range byID {
		if len(ps) < 2 {
			continue
		}
		first := slices.Min(ps)
		for _, p := range ps {
			out[p] = first
		}
	}
	return out
}

func typeOf(m fs.FileMode) byte {
	switch {
	case m.IsDir():
		return 'd'
	case m&fs.ModeSymlink != 0:
		return 'l'
	case m&fs.ModeNamedPipe != 0:
		return 'p'
	case m&fs.ModeCharDevice != 0:
		return 'c'
	case m&fs.ModeDevice != 0:
		return 'b'
	case m.IsRegular():
		return 'f'
	}
	return '?'
}

// dirLines reads the directory output with Lstat, readlink and getxattr.
func dirLines(t *testing.T, root string) []string {
	ents, err := treesnap.Dir(root, treesnap.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]string{}
	var out []string
	inos := map[string]*inode{}
	for _, e := range ents {
		ino := &inode{typ: e.Type, perm: e.Perm, uid: int(e.UID), gid: int(e.GID), mtime: e.Mtime.Unix(),
			content: e.Content, xattrs: e.Xattrs, major: e.Major, minor: e.Minor}
		if e.Type == 'f' {
			b, err := os.ReadFile(filepath.Join(root, e.Path))
			if err != nil {
				t.Fatal(err)
			}
			ino.content = string(b)
		}
		inos[e.Path] = ino
		if e.Link != "" {
			ids[e.Path] = e.Link
		}
	}
	groups := linkGroups(ids)
	for p, ino := range inos {
		out = append(out, render(p, ino, groups[p], renderOpts{}))
	}
	slices.Sort(out)
	return out
}

// tarLines reads the flattened tar with archive/tar. Every name must appear once.
func tarLines(t *testing.T, name string) []string {
	f, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	inos := map[string]*inode{}
	ids := map[string]string{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("read flattened tar: %v", err)
		}
		p := strings.TrimSuffix(strings.TrimPrefix(path.Clean("/"+h.Name), "/"), "/")
		if p == "" {
			continue // the root
		}
		if inos[p] != nil {
			t.Errorf("flattened tar: %s twice", p)
		}
		ino := &inode{perm: uint32(h.Mode) & 0o7777, uid: h.Uid, gid: h.Gid, mtime: h.ModTime.Unix(),
			major: uint32(h.Devmajor), minor: uint32(h.Devminor)}
		for k, v := range h.PAXRecords {
			if x, ok := strings.CutPrefix(k, "SCHILY.xattr."); ok {
				if ino.xattrs == nil {
					ino.xattrs = map[string]string{}
				}
				ino.xattrs[x] = v
			}
		}
		switch h.Typeflag {
		case tar.TypeDir:
			ino.typ = 'd'
		case tar.TypeReg:
			ino.typ = 'f'
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatalf("read flattened tar %s: %v", p, err)
			}
			ino.content = string(b)
			ids[p] = p
		case tar.TypeSymlink:
			ino.typ, ino.content = 'l', h.Linkname
			ids[p] = p
		case tar.TypeFifo:
			ino.typ = 'p'
			ids[p] = p
		case tar.TypeChar:
			ino.typ = 'c'
			ids[p] = p
		case tar.TypeLink:
			target := strings.TrimPrefix(path.Clean("/"+h.Linkname), "/")
			first := inos[target]
			if first == nil {
				t.Errorf("flattened tar: hard link %s to %s, which comes later or not at all", p, h.Linkname)
				continue
			}
			ino = first
			ids[p] = ids[target]
		default:
			t.Errorf("flattened tar: %s has type %q", p, h.Typeflag)
			continue
		}
		inos[p] = ino
	}
	groups := linkGroups(ids)
	var out []string
	for p, ino := range inos {
		out = append(out, render(p, ino, groups[p], renderOpts{}))
	}
	slices.Sort(out)
	return out
}

// diskfsLines reads the ext4 image with go-diskfs, a reader independent of ext4writer,
// e2fsprogs and the kernel. It cannot read xattrs or the special mode bits.
func diskfsLines(t *testing.T, img string) []string {
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	efs, err := ext4.Read(file.New(f, true), fi.Size(), 0, 0)
	if err != nil {
		t.Fatalf("go-diskfs ext4.Read: %v", err)
	}
	inos := map[string]*inode{}
	ids := map[string]string{}
	var walk func(dir string)
	walk = func(dir string) {
		ents, err := efs.ReadDir(dir)
		if err != nil {
			t.Fatalf("go-diskfs ReadDir %s: %v", dir, err)
		}
		for _, de := range ents {
			name := de.Name()
			if name == "." || name == ".." || (dir == "." && name == "lost+found") {
				continue
			}
			p := path.Join(dir, name)
			info, err := efs.Stat(p)
			if err != nil {
				t.Fatalf("go-diskfs Stat %s: %v", p, err)
			}
			st, _ := info.Sys().(*ext4.StatT)
			if st == nil {
				t.Fatalf("go-diskfs %s: no StatT", p)
			}
			ino := &inode{typ: typeOf(info.Mode()), perm: uint32(info.Mode().Perm()), uid: int(st.UID), gid: int(st.GID),
				mtime: info.ModTime().Unix(), major: st.Major, minor: st.Minor}
			if ino.typ != 'c' {
				ino.major, ino.minor = 0, 0
			}
			switch ino.typ {
			case 'f':
				b, err := efs.ReadFile(p)
				if err != nil {
					t.Fatalf("go-diskfs ReadFile %s: %v", p, err)
				}
				ino.content = string(b)
			case 'l':
				ino.content = st.LinkTarget
			case 'd':
				walk(p)
			}
			if ino.typ != 'd' {
				ids[p] = strconv.FormatUint(uint64(st.Ino), 10)
			}
			inos[p] = ino
		}
	}
	walk(".")
	groups := linkGroups(ids)
	var out []string
	for p, ino := range inos {
		out = append(out, render(p, ino, groups[p], renderOpts{noSpecial: true, noXattrs: true}))
	}
	slices.Sort(out)
	return out
}
