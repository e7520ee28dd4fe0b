// Command convprof converts an image as the img2ext4 command does by default (ext4, the
// default alignment) and writes a CPU profile of the conversion, for the profiles of
// bench/RESULTS.md; it prints the wall time, the CPU seconds and the peak RSS. With
// -timeline it also prints, on stderr, when each layer's reading started and ended, when the
// finalize phase (ext4 Close) started and ended and when Convert returned (after the
// output's fsync and rename), each with the process's CPU seconds and, with -dev, the
// milliseconds that block device (a name in /sys/block) has been busy since the start.
//
//	convprof [-cpuprofile FILE] [-trace FILE] [-timeline] [-dev vda] [-jobs N] REF OUT.img
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"runtime/pprof"
	"runtime/trace"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/img2ext4/img2ext4"
	"github.com/img2ext4/img2ext4/progress"
)

func main() {
	prof := flag.String("cpuprofile", "", "write a CPU profile of the conversion here")
	jobs := flag.Int("jobs", 0, "layers decompressed at once (0: the default)")
	tmp := flag.String("tmpdir", "", "temporary directory (default: the system's)")
	tr := flag.String("trace", "", "write an execution trace of the conversion here (go tool trace)")
	tl := flag.Bool("timeline", false, "print the layers' reading, the finalize phase and the end on stderr, with CPU seconds")
	dev := flag.String("dev", "", "with -timeline, also print the busy milliseconds of this block device (in /sys/block)")
	flag.Parse()
	if flag.NArg() != 2 {
		fmt.Fprintln(os.Stderr, "usage: convprof [-cpuprofile FILE] [-trace FILE] [-timeline] [-dev vda] [-jobs N] REF OUT.img")
		os.Exit(2)
	}
	if err := run(flag.Arg(0), flag.Arg(1), *prof, *tr, *jobs, *tmp, *tl, *dev); err != nil {
		fmt.Fprintln(os.Stderr, "convprof:", err)
		os.Exit(1)
	}
}

func run(ref, out, prof, tr string, jobs int, tmp string, tl bool, dev string) error {
	opts := []img2ext4.Option{img2ext4.WithExt4(img2ext4.Ext4Options{Align: img2ext4.DefaultAlign}), img2ext4.WithTempDir(tmp)}
	var mark func(what string)
	if tl {
		start := time.Now()
		busy0, written0 := busy(dev)
		mark = func(what string) {
			line := fmt.Sprintf("%6.3f s  cpu %5.2f s", time.Since(start).Seconds(), cpuTime().Seconds())
			if dev != "" {
				ms, mb := busy(dev)
				line += fmt.Sprintf("  %s busy %4d ms, %4d MB written", dev, ms-busy0, mb-written0)
			}
			fmt.Fprintln(os.Stderr, line+"  "+what)
		}
		applying := map[int]bool{}
		opts = append(opts, img2ext4.WithProgress(func(ev progress.Event) {
			switch {
			case ev.Phase == progress.PhaseApply && ev.Complete:
				mark(fmt.Sprintf("layer %d read (%d MB)", ev.Layer, ev.Done/1e6))
			case ev.Phase == progress.PhaseApply && !applying[ev.Layer]:
				applying[ev.Layer] = true
				mark(fmt.Sprintf("layer %d reading", ev.Layer))
			case ev.Phase == progress.PhaseFinalize && !ev.Complete:
				mark("finalize (Close)")
			case ev.Phase == progress.PhaseFinalize:
				mark("finalized")
			}
		}))
	}
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
	if mark != nil {
		mark("converted (output synced and renamed)")
	}
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return err
	}
	cpu := cpuTime()
	fmt.Printf("wall %.2f s, cpu %.2f s (user %.2f, sys %.2f), peak rss %d MiB\n", wall.Seconds(), cpu.Seconds(),
		time.Duration(ru.Utime.Nano()).Seconds(), time.Duration(ru.Stime.Nano()).Seconds(), ru.Maxrss>>10)
	return nil
}

// cpuTime returns the CPU time the process has used so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// busy returns the milliseconds block device dev has spent doing I/O and the megabytes
// written to it (the tenth and seventh fields of /sys/block/DEV/stat), or zeros when dev
// is empty or unreadable.
func busy(dev string) (ms, mb int64) {
	if dev == "" {
		return 0, 0
	}
	b, err := os.ReadFile("/sys/block/" + dev + "/stat")
	if err != nil {
		return 0, 0
	}
	f := strings.Fields(string(b))
	if len(f) < 10 {
		return 0, 0
	}
	ms, _ = strconv.ParseInt(f[9], 10, 64)
	sectors, _ := strconv.ParseInt(f[6], 10, 64)
	return ms, sectors * 512 / 1e6
}
