// Package store keeps conversion artifacts (ext4 images, tars) on disk, addressed by a
// [Key] derived from everything that decides their bytes, so that a host converting the
// same image many times, from many processes at once, converts it once.
//
// The key is computed from [Inputs] (see [Inputs.Key]); the store never looks inside an
// artifact and knows nothing of how one is made: the [Builder] given to [Store.Build]
// writes its files. [Store.Get] finds an artifact by reading one small record;
// [Store.List], [Store.Remove], [Store.Prune] (least recently used first) and
// [Store.Verify] manage them; [Preflight] checks directories for room before long work;
// [CopyFile] copies an artifact's file out, sparse or as a reflink.
//
// A root holds:
//
//	artifacts/HEX/       one published artifact: its files, record.json and "used"
//	                     (whose modification time is the last use)
//	work/HEX.RANDOM/     an artifact being built
//	locks/HEX.lock       the key's lock (flock), in the primary root only
//	trash/               artifacts being removed
//	blobs/               the blob cache, shared by all artifacts
//
// where HEX is the key's hex digits. Every change is a rename of a whole directory, made
// under the key's lock and followed by a sync of its parent, so a process killed at any
// point leaves each key with either no artifact or a complete one; its leftovers in work
// and trash are removed once no process holds their key. The store refuses keys that are
// not SHA-256 digests, so no name leads out of its root.
package store
