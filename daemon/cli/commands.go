package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/edgepass/edgepass/daemon/admin"
	"github.com/edgepass/edgepass/daemon/session"
)

const noSuchSession = "no such session; list them with `edgepass sessions list`"

// sanitize makes API-provided text safe for a terminal: a username with
// escape sequences or bidi overrides must not rewrite the operator's screen.
func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || (r >= 0x202a && r <= 0x202e) || (r >= 0x2066 && r <= 0x2069) || r == unicode.ReplacementChar {
			return '?'
		}
		return r
	}, s)
}

// cell is sanitize for a table cell, with "-" for empty.
func cell(s string) string {
	if s == "" {
		return "-"
	}
	return strings.ReplaceAll(sanitize(s), "\t", " ")
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format("2006-01-02 15:04:05Z")
}

// fetch calls the admin API. With --json it prints the answer as is and
// reports false (nothing left to print); otherwise it decodes the answer
// into v for the caller to format.
func (r *runner) fetch(ctx context.Context, c *client, o *options, method string, segs []string, q url.Values, body any, notFound string, v any) (bool, error) {
	data, err := c.call(ctx, method, segs, q, body, notFound)
	if err != nil {
		return false, err
	}
	if o.json {
		_, err := r.stdout.Write(data) // already indented by the API
		return false, err
	}
	if err := json.Unmarshal(data, v); err != nil {
		return false, fmt.Errorf("admin API at %s: unexpected answer: %v; is the CLI as new as the daemon?", c.base, err)
	}
	return true, nil
}

func (r *runner) sessionsList(ctx context.Context, c *client, o *options) error {
	q := url.Values{}
	if o.userSet {
		if o.user == "" {
			return &usageError{"--user needs a subject"}
		}
		q.Set("user", o.user)
	}
	var l admin.SessionList
	if ok, err := r.fetch(ctx, c, o, "GET", []string{"api", "v1", "sessions"}, q, nil, "", &l); !ok {
		return err
	}
	if len(l.Sessions) == 0 {
		fmt.Fprintln(r.stdout, "No sessions.")
		return nil
	}
	tw := tabwriter.NewWriter(r.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SID\tSUBJECT\tUSER\tEMAIL\tGROUPS\tISSUED\tEXPIRES")
	for _, s := range l.Sessions {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", cell(s.ID), cell(s.Subject), cell(s.Username), cell(s.Email),
			cell(strings.Join(s.Groups, ",")), stamp(s.IssuedAt), stamp(s.ExpiresAt))
	}
	return tw.Flush()
}

func (r *runner) sessionsShow(ctx context.Context, c *client, o *options, sid string) error {
	var s session.Session
	if ok, err := r.fetch(ctx, c, o, "GET", []string{"api", "v1", "sessions", sid}, nil, nil, noSuchSession, &s); !ok {
		return err
	}
	tw := tabwriter.NewWriter(r.stdout, 0, 0, 2, ' ', 0)
	for _, row := range [][2]string{
		{"SID", cell(s.ID)}, {"SUBJECT", cell(s.Subject)}, {"USER", cell(s.Username)}, {"EMAIL", cell(s.Email)},
		{"NAME", cell(s.Name)}, {"GROUPS", cell(strings.Join(s.Groups, ","))}, {"ISSUED", stamp(s.IssuedAt)},
		{"EXPIRES", stamp(s.ExpiresAt)}, {"REFRESHED", stamp(s.RefreshedAt)}, {"IDP SID", cell(s.IdPSessionID)},
	} {
		fmt.Fprintf(tw, "%s:\t%s\n", row[0], row[1])
	}
	return tw.Flush()
}

func (r *runner) sessionsRevoke(ctx context.Context, c *client, o *options, sid string) error {
	var res admin.RevokeResult
	if ok, err := r.fetch(ctx, c, o, "DELETE", []string{"api", "v1", "sessions", sid}, nil, nil, noSuchSession, &res); !ok {
		return err
	}
	fmt.Fprintf(r.stdout, "Revoked session %s of %s at every edge.\n", cell(res.ID), cell(res.Subject))
	return nil
}

func (r *runner) usersRevoke(ctx context.Context, c *client, o *options, sub string) error {
	var res admin.RevokeResult
	if ok, err := r.fetch(ctx, c, o, "POST", []string{"api", "v1", "users", sub, "revoke"}, nil, nil, "", &res); !ok {
		return err
	}
	fmt.Fprintf(r.stdout, "Revoked user %s: tokens issued until now are refused at every edge; %d stored session(s) deleted.\n",
		cell(res.Subject), res.Sessions)
	return nil
}

func (r *runner) groupsSet(ctx context.Context, c *client, o *options, sub string, lists []string) error {
	groups := []string{}
	for _, l := range lists {
		for _, g := range strings.Split(l, ",") {
			if g = strings.TrimSpace(g); g != "" {
				groups = append(groups, g)
			}
		}
	}
	var res admin.GroupsRequest
	if ok, err := r.fetch(ctx, c, o, "PUT", []string{"api", "v1", "users", sub, "groups"}, nil, map[string][]string{"groups": groups}, "", &res); !ok {
		return err
	}
	set := "none"
	if res.Groups != nil && len(*res.Groups) > 0 {
		set = strings.Join(*res.Groups, ", ")
	}
	fmt.Fprintf(r.stdout, "Set the groups of %s at every edge: %s.\n", cell(res.Subject), sanitize(set))
	return nil
}

func (r *runner) groupsClear(ctx context.Context, c *client, o *options, sub string) error {
	var res admin.GroupsRequest
	if ok, err := r.fetch(ctx, c, o, "DELETE", []string{"api", "v1", "users", sub, "groups"}, nil, nil, "", &res); !ok {
		return err
	}
	fmt.Fprintf(r.stdout, "Cleared the group override of %s; tokens keep the groups they were issued with.\n", cell(sub))
	return nil
}

func (r *runner) keysRotate(ctx context.Context, c *client, o *options) error {
	var res admin.RotateResult
	if ok, err := r.fetch(ctx, c, o, "POST", []string{"api", "v1", "keys", "rotate"}, nil, nil, "", &res); !ok {
		return err
	}
	fmt.Fprintf(r.stdout, "Rotated the signing key; new key id %s. Old public keys stay published until their tokens expire.\n", cell(res.KeyID))
	return nil
}

func (r *runner) edges(ctx context.Context, c *client, o *options) error {
	var l admin.EdgeList
	if ok, err := r.fetch(ctx, c, o, "GET", []string{"api", "v1", "edges"}, nil, nil, "", &l); !ok {
		return err
	}
	if len(l.Edges) == 0 {
		fmt.Fprintln(r.stdout, "No edge replica has reported yet (edges publish a heartbeat every 5s once connected to NATS).")
		return nil
	}
	tw := tabwriter.NewWriter(r.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "REPLICA\tBUCKET\tSYNCED\tSEQ\tBEHIND\tNATS HEARD\tLAST SEEN\tREVOKED SESSIONS\tREVOKED USERS\tGROUPS\tREJECTED")
	for _, e := range l.Edges {
		synced := "no"
		if e.Synced {
			synced = "yes"
		}
		seen := r.since(e.Received)
		if e.Stale {
			seen += " (stale)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%s\t%s\t%d\t%d\t%d\t%d\n", cell(e.Replica), cell(e.Bucket), synced, e.Seq, e.Behind,
			ago(time.Duration(e.HeardAgoMs)*time.Millisecond), seen, e.RevokedSessions, e.RevokedUsers, e.Groups, e.Rejected)
	}
	return tw.Flush()
}

// since renders how long ago t was.
func (r *runner) since(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return ago(r.now().Sub(t))
}

func ago(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	return d.Round(time.Second).String() + " ago"
}
