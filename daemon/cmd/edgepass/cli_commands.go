package main

import (
	"github.com/traefik/paerser/cli"
)

// adminCommands are the admin CLI commands implemented by daemon/cli; they
// are listed here for `edgepass --help` and dispatched to cli.Run.
var adminCommands = []*cli.Command{
	{Name: "sessions", Description: "List, show or revoke sessions: sessions list [--user=<sub>] | show <sid> | revoke <sid>."},
	{Name: "users", Description: "End every session of a user at every edge: users revoke <sub>."},
	{Name: "groups", Description: "Replace a user's groups at every edge: groups set <sub> <g1,g2>."},
	{Name: "keys", Description: "Make a new signing key current: keys rotate."},
	{Name: "edges", Description: "Show each edge replica's sync state."},
}
