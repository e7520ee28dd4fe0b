// Command summarize turns the raw numbers of e2e.sh (steps.tsv, sizes.tsv, machine.tsv,
// fsck.txt in -dir) into a Markdown summary of medians on standard output.
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
	dir := flag.String("dir", "out/e2e", "directory with the e2e.sh results")
	image := flag.String("image", "out/image-summary.json", "the summary written by mkimage")
	flag.Parse()
	if err := run(os.Stdout, *dir, *image); err != nil {
		fmt.Fprintln(os.Stderr, "summarize:", err)
		os.Exit(1)
	}
}

func readTSV(name string) ([]map[string]string, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var head []string
	var rows []map[string]string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		cols := strings.Split(sc.Text(), "\t")
		if head == nil {
			head = cols
			continue
		}
		row := map[string]string{}
		for i, h := range head {
			if i < len(cols) {
				row[h] = cols[i]
			}
		}
		rows = append(rows, row)
	}
	return rows, sc.Err()
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

func num(s string) float64 {
	f, _ := strconv.ParseFloat(s, 64)
	return f
}

// run is one pipeline run: the sums over its steps.
type runStat struct {
	wall, cpu, rss float64
	failed         bool
}

type imageSummary struct {
	Layers []struct {
		Dir          string `json:"dir"`
		Entries      int    `json:"entries"`
		Whiteouts    int    `json:"whiteouts"`
		Uncompressed int64  `json:"uncompressed_bytes"`
		Compressed   int64  `json:"compressed_bytes"`
	} `json:"layers"`
	Entries      int    `json:"entries"`
	Uncompressed int64  `json:"uncompressed_bytes"`
	Compressed   int64  `json:"compressed_bytes"`
	Manifest     string `json:"manifest_digest"`
}

const mib = 1 << 20

func run(w io.Writer, dir, image string) error {
	machine, err := os.ReadFile(filepath.Join(dir, "machine.tsv"))
	if err != nil {
		return err
	}
	fmt.Fprintln(w, "### Machine and tools")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| | |\n|---|---|")
	for _, line := range strings.Split(strings.TrimSpace(string(machine)), "\n") {
		k, v, _ := strings.Cut(line, "\t")
		fmt.Fprintf(w, "| %s | %s |\n", k, strings.ReplaceAll(v, "|", "/"))
	}
	fmt.Fprintln(w)

	if b, err := os.ReadFile(image); err == nil {
		var im imageSummary
		if err := json.Unmarshal(b, &im); err != nil {
			return err
		}
		fmt.Fprintf(w, "### Image %s\n\n", im.Manifest)
		fmt.Fprintln(w, "| layer | content | entries | whiteouts | uncompressed MiB | gzip MiB |\n|---|---|---:|---:|---:|---:|")
		for i, l := range im.Layers {
			fmt.Fprintf(w, "| %d | %s | %d | %d | %.1f | %.1f |\n", i+1, filepath.Base(l.Dir), l.Entries, l.Whiteouts,
				float64(l.Uncompressed)/mib, float64(l.Compressed)/mib)
		}
		fmt.Fprintf(w, "| all | | %d | | %.1f | %.1f |\n\n", im.Entries, float64(im.Uncompressed)/mib, float64(im.Compressed)/mib)
	}

	steps, err := readTSV(filepath.Join(dir, "steps.tsv"))
	if err != nil {
		return err
	}
	sizes, err := readTSV(filepath.Join(dir, "sizes.tsv"))
	if err != nil {
		return err
	}
	var order []string
	runs := map[string]map[string]*runStat{}
	stepWall := map[string]map[string][]float64{}
	var stepOrder []string
	for _, s := range steps {
		p, r := s["pipeline"], s["run"]
		if runs[p] == nil {
			runs[p] = map[string]*runStat{}
			stepWall[p] = map[string][]float64{}
			order = append(order, p)
		}
		rs := runs[p][r]
		if rs == nil {
			rs = &runStat{}
			runs[p][r] = rs
		}
		if s["wall_s"] == "FAILED" {
			rs.failed = true
			continue
		}
		rs.wall += num(s["wall_s"])
		rs.cpu += num(s["user_s"]) + num(s["sys_s"])
		rs.rss = max(rs.rss, num(s["maxrss_kb"])*1024)
		key := p + "/" + s["step"]
		if _, ok := stepWall[p][s["step"]]; !ok {
			stepOrder = append(stepOrder, key)
		}
		stepWall[p][s["step"]] = append(stepWall[p][s["step"]], num(s["wall_s"]))
	}
	type agg struct {
		wall, cpu, rss, minW, maxW float64
		n, failed                  int
	}
	res := map[string]agg{}
	for _, p := range order {
		var wall, cpu, rss []float64
		a := agg{}
		for _, rs := range runs[p] {
			if rs.failed {
				a.failed++
				continue
			}
			wall, cpu, rss = append(wall, rs.wall), append(cpu, rs.cpu), append(rss, rs.rss)
		}
		a.n = len(wall)
		if a.n > 0 {
			a.wall, a.cpu, a.rss = median(wall), median(cpu), median(rss)
			a.minW, a.maxW = slices.Min(wall), slices.Max(wall)
		}
		res[p] = a
	}
	outSize := map[string][2][]float64{}
	inter := map[string][2][]float64{}
	var interOrder []string
	for _, s := range sizes {
		if strings.HasSuffix(s["pipeline"], "-intermediate") {
			k := strings.TrimSuffix(s["pipeline"], "-intermediate") + " " + s["output"]
			if _, ok := inter[k]; !ok {
				interOrder = append(interOrder, k)
			}
			v := inter[k]
			v[0] = append(v[0], num(s["apparent_bytes"]))
			v[1] = append(v[1], num(s["disk_bytes"]))
			inter[k] = v
			continue
		}
		v := outSize[s["pipeline"]]
		v[0] = append(v[0], num(s["apparent_bytes"]))
		v[1] = append(v[1], num(s["disk_bytes"]))
		outSize[s["pipeline"]] = v
	}
	ref := "img2ext4"
	if _, ok := res[ref]; !ok {
		ref = "img2ext4-dir"
	}
	floor := res["floor"].wall
	fmt.Fprintln(w, "### Medians")
	fmt.Fprintln(w)
	serial := res["floor-serial"].wall
	fmt.Fprintf(w, "| pipeline | runs | wall s (min–max) | × floor | × floor-serial | × %s | CPU s | peak RSS MiB | output MiB (apparent) | output MiB (on disk) |\n", ref)
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, p := range order {
		a := res[p]
		if a.n == 0 {
			fmt.Fprintf(w, "| %s | 0 (%d failed) | | | | | | | | |\n", p, a.failed)
			continue
		}
		runsCol := strconv.Itoa(a.n)
		if a.failed > 0 {
			runsCol += fmt.Sprintf(" (+%d failed)", a.failed)
		}
		xf, xs, xr := "", "", ""
		if floor > 0 {
			xf = fmt.Sprintf("%.2f", a.wall/floor)
		}
		if serial > 0 {
			xs = fmt.Sprintf("%.2f", a.wall/serial)
		}
		if r := res[ref].wall; r > 0 {
			xr = fmt.Sprintf("%.2f", a.wall/r)
		}
		app, disk := "–", "–"
		if v, ok := outSize[p]; ok {
			app, disk = fmt.Sprintf("%.0f", median(v[0])/mib), fmt.Sprintf("%.0f", median(v[1])/mib)
		}
		fmt.Fprintf(w, "| %s | %s | %.1f (%.1f–%.1f) | %s | %s | %s | %.1f | %.0f | %s | %s |\n",
			p, runsCol, a.wall, a.minW, a.maxW, xf, xs, xr, a.cpu, a.rss/mib, app, disk)
	}
	fmt.Fprintln(w)
	for _, k := range interOrder {
		v := inter[k]
		fmt.Fprintf(w, "Intermediate %s: %.0f MiB apparent, %.0f MiB on disk (median).\n\n", k, median(v[0])/mib, median(v[1])/mib)
	}
	fmt.Fprintln(w, "### Steps (median wall s)")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| step | wall s |\n|---|---:|")
	for _, k := range stepOrder {
		p, s, _ := strings.Cut(k, "/")
		fmt.Fprintf(w, "| %s | %.1f |\n", k, median(stepWall[p][s]))
	}
	fmt.Fprintln(w)
	if b, err := os.ReadFile(filepath.Join(dir, "fsck.txt")); err == nil {
		fmt.Fprintln(w, "### e2fsck -fn (last run)")
		fmt.Fprintln(w)
		fmt.Fprintln(w, "```")
		fmt.Fprint(w, strings.TrimSpace(string(b))+"\n")
		fmt.Fprintln(w, "```")
	}
	return nil
}
