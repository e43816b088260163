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

	"github.com/edgepass/edgepass/daemon/admin"
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
  sessions list [--user=<user>]  list sessions (all, or one user's)
  sessions show <sid>            show one session
  sessions revoke <sid>          end one session at every edge
  users revoke <user>            end every session of a user at every edge
  groups set <user> <g1,g2>      replace a user's groups at every edge ("" = none)
  groups clear <user>            lift a group override set with groups set
  keys list                      list the signing keys and the trust anchor
  keys rotate                    make a new signing key current
  keys revoke <kid>              distrust a key at every edge (a leaked one);
                                 ends the sessions it signed, rotates first
                                 if it is the signing key
  keys anchor                    print the trust anchor (the edges'
                                 trustAnchors setting), for scripts
  edges                          show each edge replica's sync state
  groups list                    list the administrators' group overrides
  tokens create <name> --audiences=<a1,a2> [--groups=<g1,g2>] [--expiresIn=12h]
                                 issue a service token (printed once) for
                                 scripts and services: Authorization: Bearer
                                 on routes with serviceTokens enabled
  tokens list                    list the service tokens
  tokens revoke <id>             end a service token at every edge
  events [--follow]              the audit trail, newest first (--follow:
                                 oldest first, then new events as they come);
                                 --user, --actor, --kind, --source filter

Every change is recorded in the audit trail under the token's name (see
admin.tokens) with source cli; --reason=<text> adds why.

A <user> is a username, an email or an IdP sub, looked up in the stored
sessions (sub first, then username, then email in any case); an unknown or
ambiguous user is an error. sub:<sub> (or --sub) takes an IdP sub as given,
without a lookup: e.g. edgepass users revoke sub:1234 for a user whose
sessions are gone (their tokens are still refused).

Local command (no daemon needed):
  forwardauth-regex [--userHeader=<h> ...]  print the authResponseHeadersRegex
                                 of a Traefik ForwardAuth middleware for /verify

Flags of these commands (anywhere on the line):
  --admin.url=<url>         admin API (env EDGEPASS_ADMIN_URL, default ` + config.DefaultAdminURL + `)
  --admin.tokenFile=<path>  file holding the admin token (env EDGEPASS_ADMIN_TOKENFILE)
  --admin.token=<token>     the admin token itself (env EDGEPASS_ADMIN_TOKEN;
                            visible in ps, prefer the file or the variable)
  --json                    print the API's JSON instead of a table
  --user=<user>             sessions list: only this user's sessions
  --sub                     the <user> (or --user) is an IdP sub, taken as given

edgepass <command> --help shows one command's usage.
`

const usage = "Usage: edgepass <command> [flags]\n\n" + CommandsHelp

// adminFlags ends every admin command's help.
const adminFlags = `
Admin API flags: --admin.url, --admin.tokenFile, --admin.token (see edgepass help).
`

// userHelp explains a <user> argument in a command's help.
const userHelp = `
<user> is a username, an email or an IdP sub, looked up in the stored
sessions: an exact sub first, then a username, then an email in any case.
An unknown user is an error (exit 1), and so is a name several subjects
share (the error lists their subs). Write sub:<sub>, or add --sub, to take
an IdP sub as given without a lookup.
`

// commandHelp is each command's --help.
var commandHelp = map[string]string{
	"sessions list": `Usage: edgepass sessions list [--user=<user>] [--sub] [--json]

List the live sessions, oldest first; --user keeps one user's.
` + userHelp + adminFlags,
	"sessions show": `Usage: edgepass sessions show <sid> [--json]

Show one session (without its refresh and ID tokens).
` + adminFlags,
	"sessions revoke": `Usage: edgepass sessions revoke <sid> [--json]

End one session: every edge refuses its token from now on and the daemon
forgets it (no more refresh at the IdP).
` + adminFlags,
	"users revoke": `Usage: edgepass users revoke <user> [--sub] [--json]

End every session of a user: every edge refuses the tokens the user holds
now, and their stored sessions are deleted. The user may sign in again.
` + userHelp + `
Example: edgepass users revoke sub:1234 (a sub without stored sessions).
` + adminFlags,
	"groups set": `Usage: edgepass groups set <user> <g1,g2> [--sub] [--json]

Replace a user's groups at every edge, in the tokens they hold now and in
later logins and refreshes, until groups clear ("" sets no groups).
` + userHelp + adminFlags,
	"groups clear": `Usage: edgepass groups clear <user> [--sub] [--json]

Lift a group override set with groups set: tokens keep the groups they were
issued with, later logins and refreshes use the IdP's.
` + userHelp + adminFlags,
	"keys list": `Usage: edgepass keys list [--json]

List the signing keys and the trust anchor edges need (trustAnchors).
` + adminFlags,
	"keys rotate": `Usage: edgepass keys rotate [--json]

Make a new signing key current; old public keys stay published until the
tokens they signed have expired.
` + adminFlags,
	"keys revoke": `Usage: edgepass keys revoke <kid> [--json]

Distrust a key at every edge (a leaked one) and end the sessions whose token
it signed; if it is the signing key, rotate first.
` + adminFlags,
	"keys anchor": `Usage: edgepass keys anchor

Print only the trust anchor (the edges' trustAnchors setting), for scripts.
` + adminFlags,
	"events": `Usage: edgepass events [--follow] [--user=<text>] [--actor=<name>] [--kind=<kind>]
         [--source=<source>] [--limit=<n>] [--json]

Show the audit trail: who changed sessions, users, group overrides and keys,
through which channel, and why. Newest first (--limit, default 50); with
--follow, the last --limit events oldest first, then every new one as it
is recorded, until interrupted (--json: one JSON object per line).
--user matches the user, email, sub or actor (any case, part of the text);
--actor an actor exactly; --kind one of session_created, session_revoked,
user_revoked, groups_set, groups_cleared, groups_changed, key_rotated,
key_revoked, console_signin, console_denied, console_signout,
service_token_created, service_token_revoked; --source one of console,
api, cli, user, backchannel, refresh, schedule.
` + adminFlags,
	"groups list": `Usage: edgepass groups list [--json]

List the administrators' group overrides in force (set with groups set or
in the console), newest first. A user without a stored session shows as
their subject key unless the audit trail names them.
` + adminFlags,
	"edges": `Usage: edgepass edges [--json]

Show each edge replica's latest heartbeat: whether it is connected to NATS
and synced with the edge bucket, how far behind it is, what it holds.
` + adminFlags,
	"forwardauth-regex": `Usage: edgepass forwardauth-regex [--userHeader=<h>] [--emailHeader=<h>]
         [--groupsHeader=<h>] [--nameHeader=<h>] [--subjectHeader=<h>]
         [--stripHeaders=<h1,h2*>]

Print the authResponseHeadersRegex for a Traefik ForwardAuth middleware
pointed at the daemon's /verify. Traefik deletes the request headers matching
it before copying /verify's identity headers, so a client cannot forge them.
Give the same header settings as the /verify query; without any header
setting /verify answers with X-Auth-User, X-Auth-Email, X-Auth-Groups and
X-Auth-Name, and so does this regex. --stripHeaders adds headers to delete
(a trailing * makes a prefix). Works without a daemon.
`,
}

// help writes the help for the words of topic: one command's, a command
// group's, or the list of every command.
func help(topic []string) string {
	if len(topic) >= 2 {
		if h, ok := commandHelp[topic[0]+" "+topic[1]]; ok {
			return h
		}
		if h, ok := tokensHelp[topic[0]+" "+topic[1]]; ok {
			return h
		}
	}
	if len(topic) >= 1 {
		if h, ok := commandHelp[topic[0]]; ok {
			return h
		}
		var lines []string
		in := false // inside a matching entry (its continuation lines are indented deeper)
		for _, l := range strings.Split(CommandsHelp, "\n") {
			switch {
			case strings.HasPrefix(l, "  "+topic[0]+" "):
				in = true
			case in && strings.HasPrefix(l, "    "):
			default:
				in = false
			}
			if in {
				lines = append(lines, l)
			}
		}
		if len(lines) > 0 {
			return "Usage: edgepass " + topic[0] + " <subcommand> [flags]\n\n" + strings.Join(lines, "\n") + "\n\n" +
				"edgepass " + topic[0] + " <subcommand> --help shows one subcommand's usage.\n"
		}
	}
	return usage
}

// command is one command Run dispatches to.
type command struct {
	// args is how many positional words follow the command's name; -1: a
	// user and at least one group list (groups set).
	args int
	// local commands run without the admin API (run gets no client).
	local bool
	run   func(r *runner, ctx context.Context, c *client, o *options, args []string) error
}

// noArgs is a command of the admin API that takes no positional word.
func noArgs(f func(r *runner, ctx context.Context, c *client, o *options) error) command {
	return command{args: 0, run: func(r *runner, ctx context.Context, c *client, o *options, _ []string) error { return f(r, ctx, c, o) }}
}

// oneArg is a command of the admin API that takes one positional word.
func oneArg(f func(r *runner, ctx context.Context, c *client, o *options, arg string) error) command {
	return command{args: 1, run: func(r *runner, ctx context.Context, c *client, o *options, args []string) error {
		return f(r, ctx, c, o, args[0])
	}}
}

// commands are the commands Run understands, by name (one or two words):
// the one list dispatch, its argument check and IsCommand read.
var commands = map[string]command{
	"sessions list":   noArgs((*runner).sessionsList),
	"sessions show":   oneArg((*runner).sessionsShow),
	"sessions revoke": oneArg((*runner).sessionsRevoke),
	"users revoke":    oneArg((*runner).usersRevoke),
	"groups set": {args: -1, run: func(r *runner, ctx context.Context, c *client, o *options, args []string) error {
		return r.groupsSet(ctx, c, o, args[0], args[1:])
	}},
	"groups clear":  oneArg((*runner).groupsClear),
	"groups list":   noArgs((*runner).groupsList),
	"keys list":     noArgs((*runner).keysList),
	"keys rotate":   noArgs((*runner).keysRotate),
	"keys revoke":   oneArg((*runner).keysRevoke),
	"keys anchor":   noArgs((*runner).keysAnchor),
	"edges":         noArgs((*runner).edges),
	"events":        noArgs((*runner).events),
	"tokens create": oneArg((*runner).tokensCreate),
	"tokens list":   noArgs((*runner).tokensList),
	"tokens revoke": oneArg((*runner).tokensRevoke),
	"forwardauth-regex": {local: true, run: func(r *runner, _ context.Context, _ *client, o *options, _ []string) error {
		return r.forwardAuthRegex(o)
	}},
}

// IsCommand reports whether main should hand args starting with name to Run.
func IsCommand(name string) bool {
	if name == "help" || name == "-h" || name == "--help" {
		return true
	}
	for known := range commands {
		if first, _, _ := strings.Cut(known, " "); first == name {
			return true
		}
	}
	return false
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
	json, help, sub                  bool
	// events and --reason (events.go).
	reason, kind, source, actor, limit string
	follow                             bool
	// tokens create (tokens.go).
	groups, audiences []string
	expiresIn         string
	userSet           bool
	// headers are forwardauth-regex's header flags that were given.
	headers      map[string]string
	stripHeaders []string
}

// headerFlags are forwardauth-regex's flags, named as /verify's query.
var headerFlags = []string{"userHeader", "emailHeader", "groupsHeader", "nameHeader", "subjectHeader"}

// listFlag collects a repeatable flag.
type listFlag struct{ v *[]string }

func (l listFlag) String() string {
	if l.v == nil {
		return ""
	}
	return strings.Join(*l.v, ",")
}

func (l listFlag) Set(s string) error { *l.v = append(*l.v, s); return nil }

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
		if len(pos) > 0 && pos[0] == "help" {
			pos = pos[1:]
		}
		fmt.Fprint(r.stdout, help(pos))
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
	fs.BoolVar(&o.sub, "sub", false, "")
	fs.StringVar(&o.reason, "reason", "", "")
	fs.StringVar(&o.kind, "kind", "", "")
	fs.StringVar(&o.source, "source", "", "")
	fs.StringVar(&o.actor, "actor", "", "")
	fs.StringVar(&o.limit, "limit", "", "")
	fs.BoolVar(&o.follow, "follow", false, "")
	fs.Var(listFlag{&o.groups}, "groups", "")
	fs.Var(listFlag{&o.audiences}, "audiences", "")
	fs.StringVar(&o.expiresIn, "expiresIn", "", "")
	valueFlags := map[string]bool{"admin.url": true, "admin.token": true, "admin.tokenFile": true, "user": true, "stripHeaders": true,
		"reason": true, "kind": true, "source": true, "actor": true, "limit": true,
		"groups": true, "audiences": true, "expiresIn": true}
	headers := map[string]*string{}
	for _, name := range headerFlags {
		headers[name] = fs.String(name, "", "")
		valueFlags[name] = true
	}
	fs.Var(listFlag{&o.stripHeaders}, "stripHeaders", "")
	var flags, pos []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			pos = append(pos, args[i+1:]...)
			break
		}
		// A session id or key id is base64url and may start with "-": a
		// word that is no known flag but a well-formed id is a positional
		// argument.
		if len(a) > 1 && a[0] == '-' && (knownFlag(fs, a) || !session.ValidID(a) && !looksLikeKeyID(a)) {
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
		if v, ok := headers[f.Name]; ok {
			if o.headers == nil {
				o.headers = map[string]string{}
			}
			o.headers[f.Name] = *v
		}
	})
	return o, pos, nil
}

// looksLikeKeyID reports a word shaped like a kid the daemon generates
// (16 base64url characters).
func looksLikeKeyID(w string) bool {
	return len(w) == 16 && admin.ValidKeyID(w)
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
	c := newClient(base, token)
	c.reason = o.reason
	return c, nil
}

// dispatch runs the command named by the positional words.
func (r *runner) dispatch(ctx context.Context, o *options, pos []string) error {
	cmd := strings.Join(pos[:min(2, len(pos))], " ")
	if _, ok := commands[pos[0]]; ok { // a one-word command
		cmd = pos[0]
	}
	def, ok := commands[cmd]
	if !ok {
		var subs []string
		for known := range commands {
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
	switch want := def.args; {
	case want >= 0 && len(rest) != want:
		return &usageError{fmt.Sprintf("%s takes %d argument(s), got %d", cmd, want, len(rest))}
	case want < 0 && len(rest) < 2:
		return &usageError{"groups set needs a subject and a comma-separated group list, e.g. groups set alice admins,staff"}
	}
	if err := checkEventFlags(o, cmd); err != nil {
		return err
	}
	if o.userSet && cmd != "sessions list" && cmd != "events" {
		return &usageError{"--user only applies to sessions list and events"}
	}
	takesUser := cmd == "users revoke" || cmd == "groups set" || cmd == "groups clear"
	if o.sub && !takesUser && cmd != "sessions list" {
		return &usageError{"--sub only applies to users revoke, groups set, groups clear and sessions list --user"}
	}
	if (o.groups != nil || o.audiences != nil || o.expiresIn != "") && cmd != "tokens create" {
		return &usageError{"--groups, --audiences and --expiresIn only apply to tokens create"}
	}
	if (o.headers != nil || o.stripHeaders != nil) && cmd != "forwardauth-regex" {
		return &usageError{"--userHeader, --emailHeader, --groupsHeader, --nameHeader, --subjectHeader and --stripHeaders only apply to forwardauth-regex"}
	}
	for _, a := range rest {
		if a == "" && cmd != "groups set" {
			return &usageError{cmd + ": empty argument"}
		}
	}
	if o.sub && takesUser {
		rest[0] = admin.SubPrefix + rest[0]
	}
	if def.local {
		return def.run(r, ctx, nil, o, rest)
	}
	c, err := r.client(o)
	if err != nil {
		return err
	}
	return def.run(r, ctx, c, o, rest)
}
