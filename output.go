package img2ext4

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/img2ext4/img2ext4/layerapply"
	"golang.org/x/sys/unix"
)

// CheckError reports that a conversion cannot work as asked, found before anything was
// downloaded or written: an output that is mounted, not writable or of the wrong kind, a
// missing file to add, a size that cannot hold the image. Callers may treat it as a usage
// error.
type CheckError struct {
	// Op says what was checked ("write image", "add", "config-out").
	Op string
	// Path is the file the check is about.
	Path string
	// Err is what is wrong.
	Err error
}

func (e *CheckError) Error() string {
	if e.Path == "" {
		return e.Op + ": " + e.Err.Error()
	}
	return e.Op + " " + e.Path + ": " + e.Err.Error()
}

// Unwrap returns the underlying error.
func (e *CheckError) Unwrap() error { return e.Err }

// FormatError is the Err of a [CheckError] when the output path exists as something only
// another format writes into: a block device takes [FormatExt4] only, a character device or
// a FIFO [FormatTar] only.
type FormatError struct {
	// Output says what the output path is: "block device", "character device or FIFO".
	Output string
	// Format is the format asked for; Want is the only one the output takes.
	Format, Want Format
}

func (e *FormatError) Error() string {
	return fmt.Sprintf("is a %s, which takes the %s format only, not %s", e.Output, e.Want, e.Format)
}

// outKind is what the output path names.
type outKind int

const (
	outNew    outKind = iota // nothing yet: created
	outFile                  // a regular file: replaced atomically
	outDir                   // a directory (dir format only, and only when empty)
	outBlock                 // a block device: written in place
	outStream                // a character device or FIFO: streamed into (tar only)
)

// target is the output of one conversion, inspected before any work starts.
type target struct {
	out  string // the path as given, cleaned
	real string // the path written: out with symbolic links resolved
	kind outKind
	info fs.FileInfo // of real, when it exists
	dev  *blockDevice
	dir  *staged // FormatDir: the tree being built
	o    *options
}

// openTarget inspects out for format and refuses what cannot work: a directory for a
// file format, a device or FIFO for the wrong format, a mounted or busy block device, a
// non-empty directory for FormatDir. A symbolic link is followed, as cp and dd do. A block
// device is opened exclusively (so it cannot be mounted meanwhile); the caller closes t.
func openTarget(out string, o *options) (*target, error) {
	format := o.format
	what := map[Format]string{FormatExt4: "write image", FormatDir: "write rootfs", FormatTar: "write tar"}[format]
	fail := func(path string, format string, args ...any) (*target, error) {
		return nil, &CheckError{Op: what, Path: path, Err: fmt.Errorf(format, args...)}
	}
	out = filepath.Clean(out)
	t := &target{out: out, real: out, o: o}
	fi, err := os.Lstat(out)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		t.kind = outNew
		if err := checkDirWritable(filepath.Dir(out)); err != nil {
			return nil, &CheckError{Op: what, Path: out, Err: err}
		}
		return t, nil
	case err != nil:
		return nil, &CheckError{Op: what, Path: out, Err: err}
	}
	if fi.Mode()&fs.ModeSymlink != 0 {
		real, err := filepath.EvalSymlinks(out)
		if err != nil {
			return fail(out, "a symbolic link that cannot be followed (%v)", errors.Unwrap(err))
		}
		t.real = real
		if fi, err = os.Stat(real); err != nil {
			return nil, &CheckError{Op: what, Path: out, Err: err}
		}
	}
	t.info = fi
	m := fi.Mode()
	switch {
	case m.IsRegular():
		t.kind = outFile
	case m.IsDir():
		t.kind = outDir
	case m&fs.ModeDevice != 0 && m&fs.ModeCharDevice == 0:
		t.kind = outBlock
	case m&(fs.ModeCharDevice|fs.ModeNamedPipe) != 0:
		t.kind = outStream
	default:
		return fail(out, "not a file, directory, device or FIFO (%s)", m.Type())
	}
	switch format {
	case FormatDir:
		if t.kind != outDir {
			return fail(out, "exists and is not a directory")
		}
		entries, err := readDirNames(t.real, 1)
		if err != nil {
			return nil, &CheckError{Op: what, Path: out, Err: err}
		}
		if len(entries) > 0 {
			return fail(out, "directory exists and is not empty")
		}
		if err := checkDirWritable(t.real); err != nil {
			return nil, &CheckError{Op: what, Path: out, Err: err}
		}
		return t, nil
	case FormatTar:
		switch t.kind {
		case outDir:
			return fail(out, "is a directory")
		case outBlock:
			return nil, &CheckError{Op: what, Path: out, Err: &FormatError{Output: "block device", Format: format, Want: FormatExt4}}
		case outStream:
			return t, nil
		}
	default:
		switch t.kind {
		case outDir:
			return fail(out, "is a directory")
		case outStream:
			return nil, &CheckError{Op: what, Path: out, Err: &FormatError{Output: "character device or FIFO", Format: format, Want: FormatTar}}
		case outBlock:
			d, err := openBlockDevice(t.real)
			if err != nil {
				return nil, &CheckError{Op: what, Path: out, Err: err}
			}
			t.dev = d
			return t, nil
		}
	}
	if err := checkDirWritable(filepath.Dir(t.real)); err != nil {
		return nil, &CheckError{Op: what, Path: out, Err: err}
	}
	return t, nil
}

// Close releases a block device held open.
func (t *target) Close() error {
	if t.dev != nil {
		return t.dev.Close()
	}
	return nil
}

// checkDirWritable reports whether new files can be made in dir.
func checkDirWritable(dir string) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("directory %s: %w", dir, errors.Unwrap(err))
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a directory", dir)
	}
	if err := unix.Access(dir, unix.W_OK|unix.X_OK); err != nil {
		return fmt.Errorf("directory %s is not writable: %w", dir, err)
	}
	return nil
}

func readDirNames(dir string, n int) ([]string, error) {
	d, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	names, err := d.Readdirnames(n)
	if err == io.EOF {
		err = nil
	}
	return names, err
}

// outputFile is what a format writes into: a file, a device or a stream. Its dynamic type
// may also have Truncate (a regular file), which ext4writer uses when present.
type outputFile interface {
	io.Writer
	io.WriterAt
}

// write fills the target: a block device in place, a character device or FIFO as a
// stream, anything else through a temporary file beside it renamed into place. A launch
// config that the conversion staged (WithLaunchConfig) is renamed into place right after
// the output; when the output fails, it is discarded.
//
// A directory output comes staged already (t.dir): fill writes into its temporary
// directory, which is committed or discarded here.
func (t *target) write(what string, fill func(f outputFile) error) (err error) {
	defer func() {
		if err != nil {
			t.o.staged.discard()
			return
		}
		if err = t.o.commitLaunchConfig(); err != nil && (t.kind == outNew || t.kind == outFile) {
			removeAll(t.real) // neither, as far as a rename can be undone
		}
	}()
	if t.dir != nil {
		if err := fill(nil); err != nil {
			t.dir.discard()
			return err
		}
		return t.dir.commit()
	}
	switch t.kind {
	case outBlock:
		if err := fill(t.dev); err != nil {
			return err
		}
		if err := t.dev.finish(); err != nil {
			return fmt.Errorf("%s %s: %w", what, t.out, err)
		}
		return nil
	case outStream:
		f, err := os.OpenFile(t.real, os.O_WRONLY|unix.O_NOCTTY, 0)
		if err != nil {
			return fmt.Errorf("%s %s: %w", what, t.out, err)
		}
		err = fill(f)
		if cerr := f.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("%s %s: %w", what, t.out, cerr)
		}
		return err
	}
	st, err := stageFile(t.real, what, func(f *os.File) error { return fill(f) })
	if err != nil {
		return err
	}
	return st.commit()
}

// tempPattern is the name of a temporary output beside out: ".OUT.img2ext4-PID-*". The
// PID and a lock held on the file while it is written tell a later run whether its
// writer is dead (see removeStale).
func tempPattern(out string) string {
	return "." + filepath.Base(out) + ".img2ext4-" + strconv.Itoa(os.Getpid()) + "-*"
}

// staged is a complete output under a temporary name beside its final one, synced and
// waiting to be renamed into place. Its methods accept a nil *staged and do nothing.
type staged struct {
	tmp, final, what string
	dir              bool
	inside           bool // tmp is inside final, an empty directory: its entries move up
}

// commit renames the output into place and makes the rename durable.
func (s *staged) commit() error {
	if s == nil {
		return nil
	}
	var err error
	switch {
	case s.inside:
		err = moveUp(s.tmp, s.final)
	case s.dir:
		err = unix.Rename(s.tmp, s.final) // unlike os.Rename, replaces an empty directory
	default:
		err = os.Rename(s.tmp, s.final)
	}
	if err != nil {
		s.discard()
		return fmt.Errorf("%s %s: %w", s.what, s.final, err)
	}
	syncDir(filepath.Dir(s.final))
	return nil
}

// discard removes the temporary output.
func (s *staged) discard() {
	if s != nil {
		removeAll(s.tmp)
	}
}

// stageFile writes the file out under a temporary name beside it: fill writes the
// content, while it is synced in the background (startWriteback, whose failed sync fails
// the output), then the file is synced and made 0644. When fill or any of that fails, the
// temporary file is removed; a process killed on the way leaves only the temporary file,
// which a later run removes.
func stageFile(out, what string, fill func(f *os.File) error) (*staged, error) {
	if st, err := os.Stat(out); err == nil && st.IsDir() {
		return nil, fmt.Errorf("%s %s: is a directory", what, out)
	}
	dir := filepath.Dir(out)
	removeStale(dir, out)
	f, err := os.CreateTemp(dir, tempPattern(out))
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", what, out, err)
	}
	tmp := f.Name()
	unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) // released when this process ends
	stop := startWriteback(f)
	err = fill(f)
	if werr := stop(); err == nil && werr != nil {
		err = fmt.Errorf("%s %s: %w", what, out, werr)
	}
	if err != nil {
		f.Close()
		os.Remove(tmp)
		return nil, err
	}
	err = f.Sync()
	if err == nil {
		err = f.Chmod(0o644)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return nil, fmt.Errorf("%s %s: %w", what, out, err)
	}
	return &staged{tmp: tmp, final: out, what: what}, nil
}

// createAtomic writes the file out through a temporary file beside it, renamed over out
// when complete and synced; on any error an existing out stays untouched.
func createAtomic(out, what string, fill func(f *os.File) error) error {
	s, err := stageFile(out, what, fill)
	if err != nil {
		return err
	}
	return s.commit()
}

func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}

// convertDir builds the tree in a temporary directory and renames it into place: beside
// out when out is new, or replacing out when it is an empty directory (Linux renames a
// directory over an empty one). An empty directory that is a mount point, or whose parent
// is not writable, is filled through a temporary directory inside it instead, whose
// entries are moved up at the end.
func convertDir(ctx context.Context, ref, out string, o *options) (*Result, error) {
	t, err := openTarget(out, o)
	if err != nil {
		return nil, err
	}
	parent, inside := filepath.Dir(t.real), false
	if t.kind == outDir {
		inside = isMountRoot(t.real) || checkDirWritable(parent) != nil
	}
	pattern := tempPattern(t.real)
	if inside {
		parent, pattern = t.real, ".img2ext4-"+strconv.Itoa(os.Getpid())+"-*"
	}
	removeStale(parent, t.real)
	tmp, err := os.MkdirTemp(parent, pattern)
	if err != nil {
		return nil, fmt.Errorf("write rootfs %s: %w", out, err)
	}
	if d, err := os.Open(tmp); err == nil {
		unix.Flock(int(d.Fd()), unix.LOCK_EX|unix.LOCK_NB) // released when this process ends
		defer d.Close()
	}
	t.dir = &staged{tmp: tmp, final: t.real, what: "write rootfs", dir: true, inside: inside}
	var res *Result
	err = t.write("write rootfs", func(outputFile) error {
		var sink *layerapply.Dir
		res, err = run(ctx, ref, o, func(v1.Image) (layerapply.Sink, error) {
			s, err := layerapply.NewDir(tmp)
			sink = s
			return s, err
		}, func() error { return sink.Close() })
		if err != nil {
			return err
		}
		res.Skipped = sink.Skipped()
		return nil
	})
	if err != nil {
		return nil, err
	}
	return res, nil
}

// isMountRoot reports whether dir is where a filesystem is mounted, which no rename can
// replace.
func isMountRoot(dir string) bool {
	var st unix.Statx_t
	if err := unix.Statx(unix.AT_FDCWD, dir, unix.AT_SYMLINK_NOFOLLOW, unix.STATX_BASIC_STATS, &st); err != nil {
		return true
	}
	if st.Attributes_mask&unix.STATX_ATTR_MOUNT_ROOT != 0 {
		return st.Attributes&unix.STATX_ATTR_MOUNT_ROOT != 0
	}
	var p unix.Stat_t
	return unix.Stat(filepath.Dir(dir), &p) != nil || uint64(p.Dev) != unix.Mkdev(st.Dev_major, st.Dev_minor)
}

// moveUp moves the entries of tmp into dir, gives dir tmp's owner, mode and times, and
// removes tmp.
func moveUp(tmp, dir string) error {
	names, err := readDirNames(tmp, -1)
	if err != nil {
		return err
	}
	for _, n := range names {
		if err := os.Rename(filepath.Join(tmp, n), filepath.Join(dir, n)); err != nil {
			return err
		}
	}
	var st unix.Stat_t
	if err := unix.Lstat(tmp, &st); err != nil {
		return err
	}
	if os.Geteuid() == 0 {
		if err := os.Lchown(dir, int(st.Uid), int(st.Gid)); err != nil {
			return err
		}
	}
	if err := unix.Chmod(dir, st.Mode&0o7777); err != nil {
		return err
	}
	if err := os.Remove(tmp); err != nil {
		return err
	}
	return unix.UtimesNanoAt(unix.AT_FDCWD, dir, []unix.Timespec{st.Atim, st.Mtim}, unix.AT_SYMLINK_NOFOLLOW)
}

// removeAll removes a partly written tree even where layers made directories read-only.
func removeAll(dir string) {
	if os.RemoveAll(dir) == nil {
		return
	}
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			os.Chmod(p, 0o700)
		}
		return nil
	})
	os.RemoveAll(dir)
}

// removeStale removes temporary outputs for out that a process killed on the way left in
// dir: ".OUT.img2ext4-PID-*" files and directories (and, inside a directory output,
// ".img2ext4-PID-*") whose writer no longer runs. A writer holds a lock on its temporary
// output while it lives; the PID covers the moment between creating it and locking it.
// Whatever cannot be decided stays.
func removeStale(dir, out string) {
	prefixes := []string{"." + filepath.Base(out) + ".img2ext4-"}
	if dir == out {
		prefixes = []string{".img2ext4-"}
	}
	names, err := readDirNames(dir, -1)
	if err != nil {
		return
	}
	for _, n := range names {
		for _, p := range prefixes {
			rest, ok := strings.CutPrefix(n, p)
			if !ok {
				continue
			}
			pidStr, _, ok := strings.Cut(rest, "-")
			pid, err := strconv.Atoi(pidStr)
			if !ok || err != nil || pid <= 0 || processAlive(pid) {
				continue
			}
			path := filepath.Join(dir, n)
			f, err := os.Open(path)
			if err != nil {
				continue
			}
			if unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) == nil {
				removeAll(path)
			}
			f.Close()
		}
	}
}

// processAlive reports whether a process with this PID may still run.
func processAlive(pid int) bool {
	err := unix.Kill(pid, 0)
	return err == nil || errors.Is(err, unix.EPERM)
}

// fixSize makes a block device's size the image size: all of it, or the smaller size
// asked for. Free-space options do not apply to a size that is fixed.
func (t *target) fixSize(e *Ext4Options) error {
	if t.dev == nil {
		return nil
	}
	fail := func(format string, args ...any) error {
		return &CheckError{Op: "write image", Path: t.out, Err: fmt.Errorf(format, args...)}
	}
	if e.FreeBytes > 0 || e.FreePercent > 0 || e.FreeSet {
		return fail("extra free space does not apply to a block device, which the filesystem fills (give a smaller size to use less of it)")
	}
	if e.Size > t.dev.size {
		return fail("size %d is larger than the device (%d bytes)", e.Size, t.dev.size)
	}
	if e.Size == 0 {
		e.Size = t.dev.size
	}
	e.Size &^= 4095
	if e.Size < 64*4096 {
		return fail("the device (%d bytes) is too small for a filesystem", t.dev.size)
	}
	t.dev.fsSize = e.Size
	return nil
}

// checkSpace refuses to start when img's filesystem cannot fit: a block device or a fixed
// size smaller than what the manifest proves the content needs, or a host filesystem with
// less free space than the layers' compressed size (or the fixed size).
func (t *target) checkSpace(img v1.Image, fixed int64) error {
	if t.dev != nil {
		fixed = t.dev.fsSize
	}
	if need := provenSize(img); fixed > 0 && need > fixed {
		return &CheckError{Op: "write image", Path: t.out, Err: noSpaceError(fmt.Sprintf("too small: the image needs more than %d bytes (its last layer alone), the size is %d", need, fixed))}
	}
	if t.dev != nil {
		return nil
	}
	need := estimate(img)
	if fixed > 0 {
		need = fixed
	}
	return checkSpace(filepath.Dir(t.real), need)
}

// provenSize is a lower bound of the bytes an image's filesystem must hold, known from
// the manifest alone: half the compressed size of the last layer. Every entry of the last
// layer survives the merge (earlier layers' may not: a later one can delete them), and a
// compressor cannot make data smaller than the information it carries, which the
// filesystem stores uncompressed; the half leaves room for what a tar stores and ext4 does
// not (a hard link's target name, an entry a later one in the same layer replaces).
func provenSize(img v1.Image) int64 {
	m, err := img.Manifest()
	if err != nil || len(m.Layers) == 0 {
		return 0
	}
	return m.Layers[len(m.Layers)-1].Size / 2
}

// precheck finds, before anything is fetched, what would make the conversion fail late:
// a file to add that is missing or unreadable, a temporary directory or launch config
// whose directory is missing or not writable.
func (o *options) precheck() error {
	for _, a := range o.adds {
		if err := checkReadable(a.Src); err != nil {
			return &CheckError{Op: "add", Path: a.Src, Err: err}
		}
	}
	if o.tmpDir != "" {
		if err := checkDirWritable(o.tmpDir); err != nil {
			return &CheckError{Op: "temporary directory", Path: o.tmpDir, Err: err}
		}
	}
	if o.config != "" {
		file := o.config
		if real, err := filepath.EvalSymlinks(file); err == nil {
			file = real
		}
		if fi, err := os.Stat(file); err == nil && fi.IsDir() {
			return &CheckError{Op: "write config", Path: o.config, Err: errors.New("is a directory")}
		}
		if err := checkDirWritable(filepath.Dir(file)); err != nil {
			return &CheckError{Op: "write config", Path: o.config, Err: err}
		}
	}
	return nil
}

// checkReadable reports whether everything at and below path can be read: files read,
// directories listed and entered.
func checkReadable(path string) error {
	if _, err := os.Lstat(path); err != nil {
		return errors.Unwrap(err)
	}
	return filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		mode := uint32(unix.R_OK)
		switch {
		case d.IsDir():
			mode |= unix.X_OK
		case d.Type()&fs.ModeSymlink != 0:
			return nil // copied as a link
		}
		if err := unix.Access(p, mode); err != nil {
			return fmt.Errorf("%s is not readable: %w", p, err)
		}
		return nil
	})
}

// noSpaceError is an [ErrNoSpace] with its own message.
type noSpaceError string

func (e noSpaceError) Error() string        { return string(e) }
func (e noSpaceError) Is(target error) bool { return target == ErrNoSpace }
