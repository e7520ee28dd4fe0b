package main

import (
	"errors"
	"fmt"

	"github.com/spf13/pflag"

	"github.com/img2ext4/img2ext4/layerapply"
)

// limitFlag names the flag that sets each limit, by the What of a
// [layerapply.LimitError].
var limitFlag = map[string]string{
	layerapply.LimitEntries:    "--max-entries",
	layerapply.LimitBytes:      "--max-bytes",
	layerapply.LimitPathLen:    "--max-path-len",
	layerapply.LimitDepth:      "--max-depth",
	layerapply.LimitXattrs:     "--max-xattrs",
	layerapply.LimitXattrBytes: "--max-xattr-bytes",
	layerapply.LimitLayers:     "--max-layers",
}

// addLimitFlags adds the --max-* flags, which set l, starting from the defaults.
func addLimitFlags(fs *pflag.FlagSet, l *layerapply.Limits) {
	*l = layerapply.DefaultLimits()
	fs.Int64Var(&l.Entries, "max-entries", l.Entries, "refuse images of more than `N` tar entries over all layers")
	fs.Var(sizeValue{&l.Bytes}, "max-bytes", "refuse images of more than `SIZE` of uncompressed layers in all")
	fs.IntVar(&l.PathLen, "max-path-len", l.PathLen, "refuse entry names and link targets longer than `N` bytes")
	fs.IntVar(&l.Depth, "max-depth", l.Depth, "refuse entry names of more than `N` components")
	fs.IntVar(&l.Xattrs, "max-xattrs", l.Xattrs, "refuse entries with more than `N` extended attributes and ACLs")
	fs.IntVar(&l.XattrBytes, "max-xattr-bytes", l.XattrBytes, "refuse entries with more than `N` bytes of extended attributes")
	fs.IntVar(&l.Layers, "max-layers", l.Layers, "refuse images of more than `N` layers")
}

// checkLimits refuses limits below 1, which the library would read as "the default".
func checkLimits(l layerapply.Limits) error {
	for flag, v := range map[string]int64{
		"--max-entries": l.Entries, "--max-bytes": l.Bytes, "--max-path-len": int64(l.PathLen),
		"--max-depth": int64(l.Depth), "--max-xattrs": int64(l.Xattrs),
		"--max-xattr-bytes": int64(l.XattrBytes), "--max-layers": int64(l.Layers),
	} {
		if v < 1 {
			return fmt.Errorf("%s %d: want at least 1", flag, v)
		}
	}
	return nil
}

// limitHint names the flag that raises the limit err ran into, or returns "".
func limitHint(err error) string {
	var le *layerapply.LimitError
	if !errors.As(err, &le) || limitFlag[le.What] == "" {
		return ""
	}
	return fmt.Sprintf("The image is over the limit of %d %s; raise it with %s if you trust it.", le.Limit, le.What, limitFlag[le.What])
}
