// Package img2ext4 turns OCI and Docker container images into ext4 filesystem images a
// virtual machine can boot, or into a root filesystem directory or one flattened tar,
// without a container engine, root privileges, a loop device or external programs such as
// mkfs.ext4.
//
// [Convert] is the whole job in one call: it resolves a reference (a registry, an OCI
// layout, an OCI archive or a docker-archive, see [ocifetch.Image]), picks the platform,
// downloads the layer blobs in parallel while verifying their digests, merges the layers in
// order with the OCI whiteout rules ([layerapply.Apply]) and writes the result. The output
// appears atomically: it is built under a temporary name beside the destination and renamed
// into place only when complete, so an error or a cancellation leaves nothing new behind.
//
// The packages below it can be used on their own: ocifetch resolves and fetches, whiteout
// classifies names, layerapply merges layers into a sink, ext4writer writes an ext4
// filesystem in one pass, progress renders events.
package img2ext4
