//go:build !copystat

package copystat

// Enabled tells whether copies are counted: false unless built with the copystat tag.
const Enabled = false

// Add counts k bytes copied; without the copystat tag it does nothing and compiles away.
func Add(k int) {}

// Load returns the bytes counted since the last Reset: 0 without the copystat tag.
func Load() int64 { return 0 }

// Reset sets the count to zero.
func Reset() {}
