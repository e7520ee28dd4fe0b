// Command shapesum turns the raw numbers of shapes.sh (steps.tsv, machine.tsv and the
// NAME.json summaries of build-shapes.sh in -dir) into a Markdown table of medians on
// standard output: wall time, its ratio to the floor of the same run (the median of the
// per-run ratios), CPU time, the CPU time of the registry serving the step (when steps.tsv
// has it), peak RSS and the load average before the step.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

func main() {
	dir := flag.String("dir", "out/shapes", "directory with the shapes.sh results")
	flag.Parse()
	if err := run(os.Stdout, *dir); err != nil {
		fmt.Fprintln(os.Stderr, "shapesum:", err)
		os.Exit(1)
	}
}

type step struct {
	wall, cpu, rss, load float64
	reg                  float64 // the registry's CPU seconds during the step; -1: not recorded
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func run(w io.Writer, dir string) error {
	f, err := os.Open(filepath.Join(dir, "steps.tsv"))
	if err != nil {
		return err
	}
	defer f.Close()
	// shape → pipeline → run → step
	data := map[string]map[string]map[string]step{}
	var shapes, pipes []string
	sc := bufio.NewScanner(f)
	sc.Scan() // header
	for sc.Scan() {
		c := strings.Split(sc.Text(), "\t")
		if len(c) < 8 {
			continue
		}
		num := func(s string) float64 { v, _ := strconv.ParseFloat(s, 64); return v }
		st := step{wall: num(c[3]), cpu: num(c[4]) + num(c[5]), rss: num(c[6]) / 1024, load: num(c[7]), reg: -1}
		if len(c) > 8 {
			st.reg = num(c[8])
		}
		if data[c[0]] == nil {
			data[c[0]] = map[string]map[string]step{}
			shapes = append(shapes, c[0])
		}
		if data[c[0]][c[1]] == nil {
			data[c[0]][c[1]] = map[string]step{}
			if !slices.Contains(pipes, c[1]) {
				pipes = append(pipes, c[1])
			}
		}
		data[c[0]][c[1]][c[2]] = st
	}
	if b, err := os.ReadFile(filepath.Join(dir, "machine.tsv")); err == nil {
		fmt.Fprintln(w, "| | |\n|---|---|")
		for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			k, v, _ := strings.Cut(line, "\t")
			fmt.Fprintf(w, "| %s | %s |\n", k, v)
		}
		fmt.Fprintln(w)
	}
	for _, shape := range shapes {
		desc := ""
		if b, err := os.ReadFile(filepath.Join(dir, shape+".json")); err == nil {
			var s struct {
				Layers       []json.RawMessage `json:"layers"`
				Entries      int               `json:"entries"`
				Uncompressed int64             `json:"uncompressed_bytes"`
				Compressed   int64             `json:"compressed_bytes"`
			}
			if json.Unmarshal(b, &s) == nil {
				desc = fmt.Sprintf(": %d layers, %d MiB → %d MiB, %d entries", len(s.Layers), s.Compressed>>20, s.Uncompressed>>20, s.Entries)
			}
		}
		fmt.Fprintf(w, "### %s%s\n\n", shape, desc)
		fmt.Fprintln(w, "| pipeline | runs | wall s median (min–max) | ÷ floor (same run, median) | CPU s | registry CPU s | peak RSS MiB | load1 (min–max) |")
		fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|---|")
		floor := data[shape]["floor"]
		for _, p := range pipes {
			runs := data[shape][p]
			if len(runs) == 0 {
				continue
			}
			var wall, cpu, reg, rss, load, ratio []float64
			for r, st := range runs {
				wall = append(wall, st.wall)
				cpu = append(cpu, st.cpu)
				if st.reg >= 0 {
					reg = append(reg, st.reg)
				}
				rss = append(rss, st.rss)
				load = append(load, st.load)
				if fl, ok := floor[r]; ok && fl.wall > 0 {
					ratio = append(ratio, st.wall/fl.wall)
				}
			}
			regs := "–"
			if len(reg) > 0 {
				regs = fmt.Sprintf("%.2f", median(reg))
			}
			fmt.Fprintf(w, "| %s | %d | %.2f (%.2f–%.2f) | %.2f | %.1f | %s | %.0f | %.1f–%.1f |\n", p, len(runs),
				median(wall), slices.Min(wall), slices.Max(wall), median(ratio), median(cpu), regs, median(rss), slices.Min(load), slices.Max(load))
		}
		fmt.Fprintln(w)
	}
	return sc.Err()
}
