// Command registry serves go-containerregistry's in-process registry on a loopback address,
// keeping blobs on disk, for the end-to-end benchmarks.
//
//	registry -addr 127.0.0.1:5077 -dir bench/out/registry
//
// Manifests live in memory: push again after a restart. Only loopback addresses are
// accepted.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"

	"github.com/google/go-containerregistry/pkg/registry"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:5077", "loopback address to listen on")
	dir := flag.String("dir", "", "directory for blobs (default: in memory)")
	flag.Parse()
	if err := run(*addr, *dir); err != nil {
		fmt.Fprintln(os.Stderr, "registry:", err)
		os.Exit(1)
	}
}

func run(addr, dir string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return errors.New("refusing a non-loopback address " + addr)
	}
	opts := []registry.Option{registry.Logger(log.New(io.Discard, "", 0))}
	if dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		opts = append(opts, registry.WithBlobHandler(registry.NewDiskBlobHandler(dir)))
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	fmt.Fprintln(os.Stderr, "registry: serving on", ln.Addr())
	return http.Serve(ln, registry.New(opts...))
}
