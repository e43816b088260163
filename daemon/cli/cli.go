// Package cli is the admin command line of the edgepass binary (every
// subcommand but serve): a thin client of the admin HTTP API.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/edgepass/edgepass/daemon/config"
	"github.com/edgepass/edgepass/daemon/session"
)

// Exit codes of Run.
const (
	ExitOK    = 0
	ExitError = 1 // the API call failed
	ExitUsage = 2 // bad command line
)

// CommandsHelp lists the admin commands and their flags; `edgepass --help`
// shows it too.
const CommandsHelp = `Commands (talk to a running daemon's admin API):
  sessions list [--user=<sub>]   list sessions (all, or one user's)
  sessions show <sid>            show one session
  sessions revoke <sid>          end one session at every edge
  users revoke <sub>             end every session of a user at every edge
  groups set <sub> <g1,g2>       replace a user's groups at every edge ("" = none)
  groups clear <sub>             lift a group override set with groups set
  keys rotate                    make a new signing key current
  edges                          show each edge replica's sync state

Flags of these commands (anywhere on the line):
  --admin.url=<url>         admin API (env EDGEPASS_ADMIN_URL, default ` + config.DefaultAdminURL + `)
  --admin.tokenFile=<path>  file holding the admin token (env EDGEPASS_ADMIN_TOKENFILE)
  --admin.token=<token>     the admin token itself (env EDGEPASS_ADMIN_TOKEN;
                            visible in ps, prefer the file or the variable)
  --json                    print the API's JSON instead of a table
  --user=<sub>              sessions list: only this subject's sessions
`

const usage = "Usage: edgepass <command> [flags]\n\n" + CommandsHelp

// commands are the first words Run understands.
var commands = []string{"sessions", "users", "groups", "keys", "edges", "help"}

// IsCommand reports whether main should hand args starting with name to Run.
func IsCommand(name string) bool {
	return slices.Contains(commands, name) || name == "-h" || name == "--help"
}

// Run executes one admin command; args are the words after the binary name,
// e.g. ["sessions", "list", "--json"]. It returns the process exit code.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return (&runner{stdout: stdout, stderr: stderr, env: os.LookupEnv, now: time.Now}).run(ctx, args)
}

type runner struct {
	stdout, stderr io.Writer
	env            func(string) (string, bool)
	now            func() time.Time
}

// options are the parsed flags.
type options struct {
	adminURL, token, tokenFile, user string
	json, help                       bool
	userSet                          bool
}

// usageError is a bad command line: exit 2 with a hint.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func (r *runner) run(ctx context.Context, args []string) int {
	o, pos, err := r.parse(args)
	if err == nil && (o.help || len(pos) == 0 || pos[0] == "help") {
		if len(pos) == 0 && !o.help {
			fmt.Fprint(r.stderr, usage)
			return ExitUsage
		}
		fmt.Fprint(r.stdout, usage)
		return ExitOK
	}
	if err == nil {
		err = r.dispatch(ctx, o, pos)
	}
	if err == nil {
		return ExitOK
	}
	fmt.Fprintf(r.stderr, "edgepass: %v\n", err)
	var ue *usageError
	if errors.As(err, &ue) {
		fmt.Fprintln(r.stderr, "Run `edgepass help` for usage.")
		return ExitUsage
	}
	return ExitError
}

// parse accepts flags anywhere: they are split from the positional words
// first ("--" ends flags), then parsed with the flag package.
func (r *runner) parse(args []string) (*options, []string, error) {
	o := &options{}
	fs := flag.NewFlagSet("edgepass", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&o.adminURL, "admin.url", "", "")
	fs.StringVar(&o.token, "admin.token", "", "")
	fs.StringVar(&o.tokenFile, "admin.tokenFile", "", "")
	fs.StringVar(&o.user, "user", "", "")
	fs.BoolVar(&o.json, "json", false, "")
	fs.BoolVar(&o.help, "help", false, "")
	fs.BoolVar(&o.help, "h", false, "")
	valueFlags := map[string]bool{"admin.url": true, "admin.token": true, "admin.tokenFile": true, "user": true}
	var flags, pos []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			pos = append(pos, args[i+1:]...)
			break
		}
		// A session id is base64url and may start with "-": a word that is
		// no known flag but a well-formed id is a positional argument.
		if len(a) > 1 && a[0] == '-' && (knownFlag(fs, a) || !session.ValidID(a)) {
			flags = append(flags, a)
			name := strings.TrimLeft(a, "-")
			if !strings.Contains(name, "=") && valueFlags[name] && i+1 < len(args) {
				flags = append(flags, args[i+1])
				i++
			}
			continue
		}
		pos = append(pos, a)
	}
	if err := fs.Parse(flags); err != nil {
		return nil, nil, &usageError{err.Error()}
	}
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "user" {
			o.userSet = true
		}
	})
	return o, pos, nil
}

// knownFlag reports whether the word names a flag of fs ("-x", "--x", "--x=v").
func knownFlag(fs *flag.FlagSet, word string) bool {
	name, _, _ := strings.Cut(strings.TrimLeft(word, "-"), "=")
	return fs.Lookup(name) != nil
}

// client builds the API client from flags, then environment, then defaults.
func (r *runner) client(o *options) (*client, error) {
	raw := o.adminURL
	if raw == "" {
		raw, _ = r.env("EDGEPASS_ADMIN_URL")
	}
	if raw == "" {
		raw = config.DefaultAdminURL
	}
	base, err := url.Parse(strings.TrimSuffix(raw, "/"))
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" {
		return nil, &usageError{fmt.Sprintf("--admin.url %q is not an http(s) URL like %s", raw, config.DefaultAdminURL)}
	}
	if o.token != "" && o.tokenFile != "" {
		return nil, &usageError{"use either --admin.token or --admin.tokenFile, not both"}
	}
	token, tokenFile := o.token, o.tokenFile
	if token == "" && tokenFile == "" {
		token, _ = r.env("EDGEPASS_ADMIN_TOKEN")
		if token == "" {
			tokenFile, _ = r.env("EDGEPASS_ADMIN_TOKENFILE")
		}
	}
	if tokenFile != "" {
		var err error
		if token, err = config.ReadSecretFile(tokenFile); err != nil {
			return nil, fmt.Errorf("admin token: %w; check --admin.tokenFile", err)
		}
	}
	if token == "" {
		return nil, &usageError{"no admin token; set --admin.tokenFile, EDGEPASS_ADMIN_TOKEN or --admin.token (the daemon's admin.token)"}
	}
	return newClient(base, token), nil
}

// dispatch runs the command named by the positional words.
func (r *runner) dispatch(ctx context.Context, o *options, pos []string) error {
	cmd := strings.Join(pos[:min(2, len(pos))], " ")
	if pos[0] == "edges" {
		cmd = "edges"
	}
	argc := map[string]int{ // positional words after the command
		"sessions list": 0, "sessions show": 1, "sessions revoke": 1,
		"users revoke": 1, "groups set": -1, "groups clear": 1, "keys rotate": 0, "edges": 0,
	}
	want, ok := argc[cmd]
	if !ok {
		var subs []string
		for known := range argc {
			if first, sub, found := strings.Cut(known, " "); found && first == pos[0] {
				subs = append(subs, sub)
			}
		}
		if len(subs) > 0 {
			slices.Sort(subs)
			return &usageError{fmt.Sprintf("%s: unknown or missing subcommand %q; use %s %s", pos[0], strings.Join(pos[1:], " "), pos[0], strings.Join(subs, " | "))}
		}
		return &usageError{fmt.Sprintf("unknown command %q", strings.Join(pos, " "))}
	}
	rest := pos[len(strings.Fields(cmd)):]
	switch {
	case want >= 0 && len(rest) != want:
		return &usageError{fmt.Sprintf("%s takes %d argument(s), got %d", cmd, want, len(rest))}
	case want < 0 && len(rest) < 2:
		return &usageError{"groups set needs a subject and a comma-separated group list, e.g. groups set alice admins,staff"}
	}
	if o.userSet && cmd != "sessions list" {
		return &usageError{"--user only applies to sessions list"}
	}
	for _, a := range rest {
		if a == "" && cmd != "groups set" {
			return &usageError{cmd + ": empty argument"}
		}
	}
	c, err := r.client(o)
	if err != nil {
		return err
	}
	switch cmd {
	case "sessions list":
		return r.sessionsList(ctx, c, o)
	case "sessions show":
		return r.sessionsShow(ctx, c, o, rest[0])
	case "sessions revoke":
		return r.sessionsRevoke(ctx, c, o, rest[0])
	case "users revoke":
		return r.usersRevoke(ctx, c, o, rest[0])
	case "groups set":
		return r.groupsSet(ctx, c, o, rest[0], rest[1:])
	case "groups clear":
		return r.groupsClear(ctx, c, o, rest[0])
	case "keys rotate":
		return r.keysRotate(ctx, c, o)
	default:
		return r.edges(ctx, c, o)
	}
}
