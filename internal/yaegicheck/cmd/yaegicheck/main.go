// Command yaegicheck refuses, in the plugin's source, Go that Yaegi v0.16.1
// cannot run (see package yaegicheck). Run from the repository root:
//
//	GOWORK=off go run ./internal/yaegicheck/cmd/yaegicheck [dir ...]
//
// The directories default to plugin. Exit status 1 when something is refused.
package main

import (
	"fmt"
	"os"

	"github.com/edgepass/edgepass/internal/yaegicheck"
)

func main() {
	dirs := os.Args[1:]
	if len(dirs) == 0 {
		dirs = []string{"plugin"}
	}
	c, err := yaegicheck.New(".")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	n := 0
	for _, d := range dirs {
		fs, err := c.CheckTree(d)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		for _, f := range fs {
			fmt.Println(f)
		}
		n += len(fs)
	}
	if n > 0 {
		fmt.Fprintf(os.Stderr, "yaegicheck: %d construct(s) Yaegi v0.16.1 cannot run (Traefik interprets plugin/ with it)\n", n)
		os.Exit(1)
	}
}
