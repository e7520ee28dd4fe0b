// Package store keeps conversion artifacts (ext4 images, tars) on disk, addressed by a
// [Key] derived from everything that decides their bytes, so that a host converting the
// same image many times, from many processes at once, converts it once.
//
// The key is computed from [Inputs] (see [Inputs.Key]); the store never looks inside an
// artifact and knows nothing of how one is made: a build function given to the store
// writes the files. It refuses keys that are not SHA-256 digests and never follows a
// name out of its root.
package store
