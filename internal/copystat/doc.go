// Package copystat counts the bytes of layer data that img2ext4's own code copies between
// the decompressor's output and the ext4 writer's pwrite (pipeline chunk to reader, the
// writer's block and pending buffers, spool files), for the bytes-copied benchmark figure
// of bench/stages_test.go. The counting exists only in a build with the copystat tag
// (go test -tags copystat); otherwise every function is empty and compiles away.
package copystat
