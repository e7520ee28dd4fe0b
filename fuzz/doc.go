// Package fuzz holds cross-package fuzz targets: properties that only hold when several
// packages agree, such as every sink giving the same merged tree for the same layers.
// The targets live in its tests; their seed corpora run with the normal go test.
package fuzz
