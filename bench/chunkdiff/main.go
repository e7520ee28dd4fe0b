// Command chunkdiff compares two images chunk by chunk, as a registry that stores fixed-size,
// content-addressed chunks would see them when the second is pushed after the first.
//
//	chunkdiff [-chunk BYTES] [-json] OLD NEW
//
// Both files are cut into chunks of the same size (2 MiB by default; the last chunk of a
// file may be shorter). For the chunks of NEW it counts:
//
//   - same: identical to OLD's chunk at the same offset;
//   - zero: all zero bytes (a hole a push records and never uploads);
//   - known: found anywhere in OLD by content (SHA-256), zero chunks excluded;
//   - upload: the distinct non-zero contents that are not in OLD, which a push of NEW after
//     OLD uploads.
//
// "new at offset" is NEW's chunk count less same; the figure the dedup target of issue 10
// speaks of. Nothing is written.
package main

import (
	"crypto/sha256"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
)

type result struct {
	ChunkBytes  int64 `json:"chunk_bytes"`
	OldBytes    int64 `json:"old_bytes"`
	NewBytes    int64 `json:"new_bytes"`
	OldChunks   int   `json:"old_chunks"`
	NewChunks   int   `json:"new_chunks"`
	Zero        int   `json:"zero"`
	Same        int   `json:"same_offset"`
	NewAtOffset int   `json:"new_at_offset"`
	// NonZeroNewAtOffset counts the chunks that differ at their offset and are not zero.
	NonZeroNewAtOffset int `json:"nonzero_new_at_offset"`
	Known              int `json:"known_anywhere"`
	Upload             int `json:"upload"`
	// Differ lists the indexes of NEW's chunks that differ from OLD's at the same offset.
	Differ []int `json:"differ"`
}

func main() {
	chunk := flag.Int64("chunk", 2<<20, "chunk size in bytes")
	asJSON := flag.Bool("json", false, "print JSON instead of text")
	flag.Parse()
	if flag.NArg() != 2 || *chunk <= 0 {
		fmt.Fprintln(os.Stderr, "usage: chunkdiff [-chunk BYTES] [-json] OLD NEW")
		os.Exit(2)
	}
	r, err := compare(flag.Arg(0), flag.Arg(1), *chunk)
	if err != nil {
		fmt.Fprintln(os.Stderr, "chunkdiff:", err)
		os.Exit(1)
	}
	if *asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(r); err != nil {
			fmt.Fprintln(os.Stderr, "chunkdiff:", err)
			os.Exit(1)
		}
		return
	}
	pct := func(n int) float64 { return 100 * float64(n) / float64(max(r.NewChunks, 1)) }
	fmt.Printf("chunk %d bytes; old %d bytes (%d chunks), new %d bytes (%d chunks)\n", r.ChunkBytes, r.OldBytes, r.OldChunks, r.NewBytes, r.NewChunks)
	fmt.Printf("new chunks identical at the same offset: %d (%.1f %%); differing: %d (%.1f %%), %d of them not zero\n",
		r.Same, pct(r.Same), r.NewAtOffset, pct(r.NewAtOffset), r.NonZeroNewAtOffset)
	fmt.Printf("zero chunks (holes): %d; non-zero chunks found anywhere in old: %d; to upload: %d (%.1f %%)\n",
		r.Zero, r.Known, r.Upload, pct(r.Upload))
	fmt.Printf("differing chunk indexes: %v\n", r.Differ)
}

// sums returns the SHA-256 of every chunk of the file, and whether each is all zero.
func sums(name string, chunk int64) ([][32]byte, []bool, int64, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, nil, 0, err
	}
	defer f.Close()
	var hs [][32]byte
	var zs []bool
	buf := make([]byte, chunk)
	var total int64
	for {
		n, err := io.ReadFull(f, buf)
		if n > 0 {
			total += int64(n)
			hs = append(hs, sha256.Sum256(buf[:n]))
			zs = append(zs, allZero(buf[:n]))
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return hs, zs, total, nil
		}
		if err != nil {
			return nil, nil, 0, fmt.Errorf("read %s: %w", name, err)
		}
	}
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

func compare(oldName, newName string, chunk int64) (*result, error) {
	oh, _, ob, err := sums(oldName, chunk)
	if err != nil {
		return nil, err
	}
	nh, nz, nb, err := sums(newName, chunk)
	if err != nil {
		return nil, err
	}
	r := &result{ChunkBytes: chunk, OldBytes: ob, NewBytes: nb, OldChunks: len(oh), NewChunks: len(nh), Differ: []int{}}
	inOld := make(map[[32]byte]bool, len(oh))
	for _, h := range oh {
		inOld[h] = true
	}
	upload := map[[32]byte]bool{}
	for i, h := range nh {
		if i < len(oh) && oh[i] == h {
			r.Same++
		} else {
			r.NewAtOffset++
			r.Differ = append(r.Differ, i)
			if !nz[i] {
				r.NonZeroNewAtOffset++
			}
		}
		switch {
		case nz[i]:
			r.Zero++
		case inOld[h]:
			r.Known++
		default:
			upload[h] = true
		}
	}
	r.Upload = len(upload)
	return r, nil
}
