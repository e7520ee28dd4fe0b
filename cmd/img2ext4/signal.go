package main

import (
	"context"
	"errors"
	"os"
	"os/signal"
	"syscall"
)

// signalCause is the cause of a context cancelled by a signal.
type signalCause struct{ sig syscall.Signal }

func (s signalCause) Error() string {
	switch s.sig {
	case syscall.SIGINT:
		return "interrupted (SIGINT)"
	case syscall.SIGTERM:
		return "terminated (SIGTERM)"
	}
	return "stopped by signal " + s.sig.String()
}

// Is makes a signal count as a cancellation.
func (s signalCause) Is(target error) bool { return target == context.Canceled }

// notifySignals returns a context cancelled, with a [signalCause], on the first SIGINT
// or SIGTERM. After that first signal the default action is restored, so a second one
// stops the process at once. stop releases the handler.
func notifySignals(parent context.Context) (ctx context.Context, stop func()) {
	ctx, cancel := context.WithCancelCause(parent)
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		select {
		case s := <-ch:
			signal.Reset(syscall.SIGINT, syscall.SIGTERM)
			cancel(signalCause{s.(syscall.Signal)})
		case <-done:
		}
	}()
	return ctx, func() {
		signal.Stop(ch)
		close(done)
		cancel(nil)
	}
}

// exitStatus is code, or 128 plus the signal's number when a signal cancelled ctx, as
// shells report a process a signal ended: 130 for SIGINT, 143 for SIGTERM.
func exitStatus(ctx context.Context, code int) int {
	var sc signalCause
	if code != exitOK && errors.As(context.Cause(ctx), &sc) {
		return 128 + int(sc.sig)
	}
	return code
}
