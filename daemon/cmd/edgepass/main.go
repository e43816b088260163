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
	"runtime"
	"runtime/debug"
	"strings"
	"syscall"

	"github.com/traefik/paerser/cli"

	cmdcli "github.com/edgepass/edgepass/daemon/cli"
	"github.com/edgepass/edgepass/daemon/config"
	"github.com/edgepass/edgepass/daemon/serve"
)

// version is set at build time: -ldflags "-X main.version=v1.2.3".
var version = "dev"

func main() {
	os.Exit(run(os.Args, os.Environ(), os.Stdout, os.Stderr))
}

func run(args, environ []string, stdout, stderr io.Writer) int {
	root := &cli.Command{
		Name: "edgepass",
		Description: `Single sign-on at the Traefik edge.
	Runs the OIDC login, session store and edge sync (serve), and manages them over the admin API.`,
	}
	cfg := config.New()
	serveCmd := &cli.Command{
		Name:          "serve",
		Description:   "Run the daemon: NATS (embedded or external), OIDC login, /verify, admin API.",
		Configuration: cfg,
		Resources:     []cli.ResourceLoader{layered{environ: environ}},
		Run:           func([]string) error { return runServe(cfg, stderr) },
	}
	versionCmd := &cli.Command{
		Name:        "version",
		Description: "Print the version.",
		Run: func([]string) error {
			_, err := fmt.Fprintln(stdout, versionString())
			return err
		},
	}
	cmds := []*cli.Command{serveCmd, versionCmd}
	for _, c := range append(cmds, adminCommands...) {
		if err := root.AddCommand(c); err != nil {
			fmt.Fprintln(stderr, err)
			return 2
		}
	}

	rest := args[1:]
	if len(rest) == 0 || isHelp(rest[0]) || rest[0] == "help" {
		if err := cli.PrintHelp(stdout, root); err != nil {
			fmt.Fprintln(stderr, "edgepass:", err)
			return 1
		}
		if len(rest) == 0 {
			return 2
		}
		return 0
	}
	if rest[0] != "help" && cmdcli.IsCommand(rest[0]) {
		// Admin CLI: flags --admin.url/--admin.token/--admin.tokenFile and
		// EDGEPASS_ADMIN_* are read by daemon/cli itself.
		return cmdcli.Run(context.Background(), rest, stdout, stderr)
	}
	for _, c := range cmds {
		if c.Name != rest[0] {
			continue
		}
		if err := runCommand(c, rest[1:], stdout); err != nil {
			fmt.Fprintln(stderr, "edgepass "+c.Name+":", err)
			return 1
		}
		return 0
	}
	fmt.Fprintf(stderr, "edgepass: unknown command %q; see edgepass --help\n", rest[0])
	return 2
}

// runCommand runs one subcommand the way paerser's cli would (help, then
// resource loaders, then Run), without reading os.Args.
func runCommand(c *cli.Command, args []string, stdout io.Writer) error {
	if c.Configuration != nil {
		for _, a := range args {
			if isHelp(a) {
				return cli.PrintHelp(stdout, c)
			}
		}
		for _, a := range args {
			if !strings.HasPrefix(a, "-") {
				return fmt.Errorf("unexpected argument %q; settings are flags like --oidc.issuer=…", a)
			}
		}
		for _, r := range c.Resources {
			done, err := r.Load(args, c)
			if err != nil {
				return err
			}
			if done {
				break
			}
		}
	}
	return c.Run(args)
}

func isHelp(a string) bool { return a == "--help" || a == "-help" || a == "-h" }

// layered loads the serve configuration: defaults, file, EDGEPASS_*, flags.
type layered struct{ environ []string }

func (l layered) Load(args []string, cmd *cli.Command) (bool, error) {
	c, err := config.Decode(args, l.environ)
	if err != nil {
		return false, err
	}
	*cmd.Configuration.(*config.Configuration) = *c
	return true, nil
}

func runServe(cfg *config.Configuration, stderr io.Writer) error {
	if err := cfg.Complete(); err != nil {
		return err
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level(cfg.Log.Level)}))
	logger.Info("starting edgepass", "version", versionString())
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

func versionString() string {
	v := version
	if bi, ok := debug.ReadBuildInfo(); ok {
		if v == "dev" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			v = bi.Main.Version
		}
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				v += " (" + s.Value[:12] + ")"
			}
		}
	}
	return fmt.Sprintf("edgepass %s %s %s/%s", v, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}
