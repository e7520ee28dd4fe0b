// Package writercmp benchmarks ext4writer beside hcsshim's tar2ext4 and
// mkfs.ext4 -d on the same content, as issue 3 asks: 100,000 small files in
// one directory, one 1 GiB file of deterministic non-zero data (also written
// raw, as the sequential write baseline) and a real Debian root filesystem.
//
// Every writer ends with its output on disk: ext4writer, tar2ext4 and the raw
// write call File.Sync, and mke2fs fsyncs the image itself when it closes.
// Inputs are built before the timer starts; see bench/RESULTS-writer.md.
package writercmp
