package layerapply

import (
	"archive/tar"
	"strings"
)

// The What of a [LimitError] from [Apply] names the [Limits] field it concerns, so that a
// caller can say how to raise it.
const (
	LimitEntries    = "entries"            // Limits.Entries
	LimitBytes      = "uncompressed bytes" // Limits.Bytes
	LimitPathLen    = "path length"        // Limits.PathLen
	LimitXattrBytes = "xattr size"         // Limits.XattrBytes
	LimitDepth      = "path depth"         // Limits.Depth
	LimitXattrs     = "xattrs"             // Limits.Xattrs
	LimitLayers     = "layers"             // Limits.Layers
)

// checkLayers refuses an image of more than Limits.Layers layers.
func (a *applier) checkLayers(n int) error {
	if n > a.opts.limits.Layers {
		return &LimitError{What: LimitLayers, Limit: int64(a.opts.limits.Layers)}
	}
	return nil
}

// checkLimits checks the limits of one entry that its name and records alone decide:
// the depth of its name (and of a hard link's target) and the number of its extended-attribute records. Entries,
// path length and xattr size are checked where they are counted.
func (a *applier) checkLimits(hdr *tar.Header) error {
	if pathDepth(hdr.Name) > a.opts.limits.Depth || hdr.Typeflag == tar.TypeLink && pathDepth(hdr.Linkname) > a.opts.limits.Depth {
		return &LimitError{What: LimitDepth, Limit: int64(a.opts.limits.Depth)}
	}
	if len(hdr.PAXRecords) > a.opts.limits.Xattrs {
		n := 0
		for k := range hdr.PAXRecords {
			if strings.HasPrefix(k, XattrPrefix) || strings.HasPrefix(k, libarchiveXattrPrefix) || strings.HasPrefix(k, "SCHILY.acl.") {
				n++
			}
		}
		if n > a.opts.limits.Xattrs {
			return &LimitError{What: LimitXattrs, Limit: int64(a.opts.limits.Xattrs)}
		}
	}
	return nil
}

// pathDepth counts the components of a slash-separated name, ignoring empty and "."
// ones ("./a//b/" has two).
func pathDepth(name string) int {
	n := 0
	for name != "" {
		var c string
		c, name, _ = strings.Cut(name, "/")
		if c != "" && c != "." {
			n++
		}
	}
	return n
}
