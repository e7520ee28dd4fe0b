package layerapply

import (
	"archive/tar"
	"io"
	"slices"
)

// Sink receives the merged result of applying layers, one resolved operation at a time.
//
// [Apply] does all the layer reasoning (whiteouts, opaque directories, type replacement,
// symlink resolution, hard-link targets), so a Sink only carries out plain operations on
// names that are already safe. Every name a Sink sees satisfies [io/fs.ValidPath], contains
// no symbolic link in its parent directories, and has all its parents present as
// directories. The root directory is ".".
//
// The calls Apply makes are:
//   - Entry for a name that does not exist yet, or for a directory over an existing
//     directory, in which case the entry's metadata replaces the old metadata and the
//     children stay. Before any other replacement Apply calls Whiteout on the old name.
//   - Whiteout for a name that exists: remove it and everything below it. Removing one name
//     of a hard-linked file leaves the other names and their content as they are.
//   - Opaque for a directory that exists: remove all of its children, keeping the directory.
type Sink interface {
	// Entry creates hdr.Name. hdr.Typeflag is one of tar.TypeReg, TypeLink, TypeSymlink,
	// TypeChar, TypeBlock, TypeDir or TypeFifo. For TypeReg, body yields exactly hdr.Size
	// bytes and is valid only during the call. For TypeLink, hdr.Linkname is the resolved,
	// existing, non-directory name to link to. For TypeSymlink, hdr.Linkname is the target
	// exactly as the layer gave it. Extended attributes are in hdr.PAXRecords under
	// "SCHILY.xattr." keys (see [Xattrs]); no other PAX records are passed.
	Entry(hdr *tar.Header, body io.Reader) error
	// Whiteout removes name and everything below it.
	Whiteout(name string) error
	// Opaque removes every child of the directory dir, keeping dir itself.
	Opaque(dir string) error
}

// XattrPrefix starts the PAX record keys that carry extended attributes.
const XattrPrefix = "SCHILY.xattr."

// Xattrs calls fn for each extended attribute carried in hdr, in sorted name order.
func Xattrs(hdr *tar.Header, fn func(name, value string) error) error {
	if len(hdr.PAXRecords) == 0 {
		return nil
	}
	names := make([]string, 0, len(hdr.PAXRecords))
	for k := range hdr.PAXRecords {
		if len(k) > len(XattrPrefix) && k[:len(XattrPrefix)] == XattrPrefix {
			names = append(names, k[len(XattrPrefix):])
		}
	}
	slices.Sort(names)
	for _, n := range names {
		if err := fn(n, hdr.PAXRecords[XattrPrefix+n]); err != nil {
			return err
		}
	}
	return nil
}
