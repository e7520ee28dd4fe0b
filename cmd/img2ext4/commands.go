package main

import (
	"context"
	"io"
)

// command runs a subcommand with the arguments after its name and returns the exit status.
type command func(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int

// commands maps a first argument to the subcommand it names; one line per subcommand. A
// command line whose first argument names none of them is a conversion (a registry image
// whose name is one of these words is written "docker://NAME").
var commands = map[string]command{
	"push":  runPush,
	"pull":  runPull,
	"store": runStore,
}

// subcommand returns the subcommand args name and the arguments it takes.
func subcommand(args []string) (command, []string, bool) {
	if len(args) == 0 {
		return nil, nil, false
	}
	cmd, ok := commands[args[0]]
	return cmd, args[1:], ok
}
