// Command edgepass is the edgepass daemon (`edgepass serve`) and its admin
// CLI (`edgepass sessions list`, …). Configuration: docs/contracts.md.
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	cmdcli "github.com/edgepass/edgepass/daemon/cli"
	"github.com/edgepass/edgepass/daemon/config"
	"github.com/edgepass/edgepass/daemon/serve"
	"github.com/edgepass/edgepass/daemon/version"
)

func main() {
	os.Exit(run(os.Args, os.Environ(), os.Stdout, os.Stderr))
}

const rootHelp = `edgepass: single sign-on at the Traefik edge.

Usage:
  edgepass serve [--configFile=edgepass.yml] [--<setting>=<value> ...]
      Run the daemon (OIDC login, sessions, edge sync over NATS, /verify,
      admin API). edgepass serve --help lists every setting.
  edgepass <command> [flags]
      Manage a running daemon (commands below).
  edgepass version
      Print the version.

` + cmdcli.CommandsHelp

func run(args, environ []string, stdout, stderr io.Writer) int {
	rest := args[1:]
	if len(rest) == 0 {
		fmt.Fprint(stderr, rootHelp)
		return 2
	}
	switch cmd := rest[0]; {
	case isHelp(cmd) || cmd == "help" && len(rest) == 1:
		fmt.Fprint(stdout, rootHelp)
		return 0
	case cmd == "help" && rest[1] == "serve":
		return serveCommand([]string{"--help"}, environ, stdout, stderr)
	case cmd == "serve":
		return serveCommand(rest[1:], environ, stdout, stderr)
	case cmd == "version":
		fmt.Fprintln(stdout, versionString())
		return 0
	case cmdcli.IsCommand(cmd):
		// The admin CLI reads --admin.url/--admin.token/--admin.tokenFile
		// and EDGEPASS_ADMIN_* itself.
		return cmdcli.Run(context.Background(), rest, stdout, stderr)
	}
	fmt.Fprintf(stderr, "edgepass: unknown command %q; see edgepass --help\n", rest[0])
	return 2
}

// serveCommand is `edgepass serve [flags]`.
func serveCommand(args, environ []string, stdout, stderr io.Writer) int {
	for _, a := range args {
		if isHelp(a) {
			if err := config.WriteHelp(stdout); err != nil {
				return 1
			}
			return 0
		}
	}
	for _, a := range args {
		if !strings.HasPrefix(a, "-") {
			fmt.Fprintf(stderr, "edgepass serve: unexpected argument %q; settings are flags like --oidc.issuer=…\n", a)
			return 2
		}
	}
	cfg, err := config.Load(args, environ)
	if err == nil {
		err = runServe(cfg, stderr)
	}
	if err != nil {
		fmt.Fprintln(stderr, "edgepass serve:", err)
		return 1
	}
	return 0
}

func isHelp(a string) bool { return a == "--help" || a == "-help" || a == "-h" }

// runServe runs the daemon until SIGINT or SIGTERM.
func runServe(cfg *config.Configuration, stderr io.Writer) error {
	logger := newLogger(cfg.Log, stderr)
	v := version.Get()
	logger = logger.With("version", v.Version)
	logger.Info("starting edgepass", "commit", v.Commit, "go", v.Go)
	if cfg.ConfigFile != "" {
		logger.Info("configuration loaded", "file", cfg.ConfigFile)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		stop() // a second signal during shutdown kills the process
	}()
	srv, err := serve.New(ctx, cfg, logger)
	if err != nil {
		return err
	}
	if err := srv.Serve(ctx); err != nil {
		return err
	}
	logger.Info("edgepass stopped")
	return nil
}

// newLogger writes log.format lines (text or json) at log.level to w.
func newLogger(l config.Log, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level(l.Level)}
	if strings.EqualFold(l.Format, "json") {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func level(s string) slog.Level {
	switch strings.ToLower(s) {
	case "debug":
		return slog.LevelDebug
	case "warn", "warning":
		return slog.LevelWarn
	case "error":
		return slog.LevelError
	}
	return slog.LevelInfo
}

func versionString() string { return version.Get().String() }
