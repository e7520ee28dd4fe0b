// Package whiteout classifies the names of entries in OCI and Docker layer tars.
//
// A layer marks deletions with AUFS-style whiteout files: ".wh.NAME" removes NAME from the
// lower layers, and ".wh..wh..opq" inside a directory hides every lower-layer child of that
// directory. AUFS bookkeeping names (".wh..wh.plnk", ".wh..wh.aufs" and anything else that
// starts with ".wh..wh.") carry no meaning for an image and are reported so they can be
// skipped.
//
// The package is pure: [Classify] looks only at the name it is given and performs no I/O.
// It refuses whiteouts whose target would name "." or ".." or leave the directory the
// whiteout stands in, reporting them as [Invalid].
package whiteout
