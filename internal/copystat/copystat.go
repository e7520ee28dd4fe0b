//go:build copystat

package copystat

import "sync/atomic"

// Enabled tells whether copies are counted: true in a build with the copystat tag.
const Enabled = true

var n atomic.Int64

// Add counts k bytes copied.
func Add(k int) { n.Add(int64(k)) }

// Load returns the bytes counted since the last Reset.
func Load() int64 { return n.Load() }

// Reset sets the count to zero.
func Reset() { n.Store(0) }
