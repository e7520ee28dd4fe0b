// Command convprof converts an image as the img2ext4 command does by default (ext4, the
// default alignment) and writes a CPU profile of the conversion, for the profiles of
// bench/RESULTS.md; it prints the wall time, the CPU seconds and the peak RSS.
//
//	convprof [-cpuprofile FILE] [-trace FILE] [-jobs N] REF OUT.img
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"runtime/pprof"
	"runtime/trace"
	"syscall"
	"time"

	"github.com/img2ext4/img2ext4"
)

func main() {
	prof := flag.String("cpuprofile", "", "write a CPU profile of the conversion here")
	jobs := flag.Int("jobs", 0, "layers decompressed at once (0: the default)")
	tmp := flag.String("tmpdir", "", "temporary directory (default: the system's)")
	tr := flag.String("trace", "", "write an execution trace of the conversion here (go tool trace)")
	flag.Parse()
	if flag.NArg() != 2 {
		fmt.Fprintln(os.Stderr, "usage: convprof [-cpuprofile FILE] [-trace FILE] [-jobs N] REF OUT.img")
		os.Exit(2)
	}
	if err := run(flag.Arg(0), flag.Arg(1), *prof, *tr, *jobs, *tmp); err != nil {
		fmt.Fprintln(os.Stderr, "convprof:", err)
		os.Exit(1)
	}
}

func run(ref, out, prof, tr string, jobs int, tmp string) error {
	opts := []img2ext4.Option{img2ext4.WithExt4(img2ext4.Ext4Options{Align: img2ext4.DefaultAlign}), img2ext4.WithTempDir(tmp)}
	if jobs > 0 {
		opts = append(opts, img2ext4.WithJobs(jobs))
	}
	if prof != "" {
		f, err := os.Create(prof)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	if tr != "" {
		f, err := os.Create(tr)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := trace.Start(f); err != nil {
			return err
		}
		defer trace.Stop()
	}
	start := time.Now()
	if _, err := img2ext4.Convert(context.Background(), ref, out, opts...); err != nil {
		return err
	}
	wall := time.Since(start)
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return err
	}
	cpu := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	fmt.Printf("wall %.2f s, cpu %.2f s (user %.2f, sys %.2f), peak rss %d MiB\n", wall.Seconds(), cpu.Seconds(),
		time.Duration(ru.Utime.Nano()).Seconds(), time.Duration(ru.Stime.Nano()).Seconds(), ru.Maxrss>>10)
	return nil
}
