package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/edgepass/edgepass/daemon/admin"
	"github.com/edgepass/edgepass/daemon/session"
	"github.com/edgepass/edgepass/daemon/verify"
	"github.com/edgepass/edgepass/plugin/policy"
)

const noSuchSession = "no such session; list them with `edgepass sessions list`"

// noSuchUser is the hint when the admin API finds no such user.
const noSuchUser = "see who has sessions with `edgepass sessions list` (--sub also names an IdP sub as given)"

// matched describes how the admin API found a user, for the output.
func matched(sub, by string) string {
	switch by {
	case "":
		return "" // an older daemon
	case admin.MatchExplicit:
		return " (IdP sub, as given)"
	}
	return fmt.Sprintf(" (IdP sub %s, matched by %s)", cell(sub), cell(by))
}

// display is a user argument as the operator meant it.
func display(user, fallback string) string {
	if user == "" {
		return cell(fallback)
	}
	return cell(strings.TrimPrefix(user, admin.SubPrefix))
}

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
	if o.sub && !o.userSet {
		return &usageError{"--sub needs --user=<sub>"}
	}
	if o.userSet {
		if o.user == "" {
			return &usageError{"--user needs a username, an email or an IdP sub"}
		}
		user := o.user
		if o.sub {
			user = admin.SubPrefix + user
		}
		q.Set("user", user)
	}
	var l admin.SessionList
	if ok, err := r.fetch(ctx, c, o, "GET", []string{"api", "v1", "sessions"}, q, nil, noSuchUser, &l); !ok {
		return err
	}
	rows := make([][]string, 0, len(l.Sessions))
	for _, s := range l.Sessions {
		rows = append(rows, []string{cell(s.ID), cell(s.Subject), cell(s.Username), cell(s.Email),
			cell(strings.Join(s.Groups, ",")), stamp(s.IssuedAt), stamp(s.ExpiresAt)})
	}
	return r.table("No sessions.", "SID\tSUBJECT\tUSER\tEMAIL\tGROUPS\tISSUED\tEXPIRES", rows)
}

// table prints rows in aligned columns under header (none when ""); with
// no rows it prints none instead, when none is set.
func (r *runner) table(none, header string, rows [][]string) error {
	if len(rows) == 0 && none != "" {
		fmt.Fprintln(r.stdout, none)
		return nil
	}
	tw := tabwriter.NewWriter(r.stdout, 0, 0, 2, ' ', 0)
	if header != "" {
		fmt.Fprintln(tw, header)
	}
	for _, row := range rows {
		fmt.Fprintln(tw, strings.Join(row, "\t"))
	}
	return tw.Flush()
}

func (r *runner) sessionsShow(ctx context.Context, c *client, o *options, sid string) error {
	var s session.Session
	if ok, err := r.fetch(ctx, c, o, "GET", []string{"api", "v1", "sessions", sid}, nil, nil, noSuchSession, &s); !ok {
		return err
	}
	return r.table("", "", [][]string{
		{"SID:", cell(s.ID)}, {"SUBJECT:", cell(s.Subject)}, {"USER:", cell(s.Username)}, {"EMAIL:", cell(s.Email)},
		{"NAME:", cell(s.Name)}, {"GROUPS:", cell(strings.Join(s.Groups, ","))}, {"ISSUED:", stamp(s.IssuedAt)},
		{"EXPIRES:", stamp(s.ExpiresAt)}, {"REFRESHED:", stamp(s.RefreshedAt)}, {"IDP SID:", cell(s.IdPSessionID)},
	})
}

func (r *runner) sessionsRevoke(ctx context.Context, c *client, o *options, sid string) error {
	var res admin.RevokeResult
	if ok, err := r.fetch(ctx, c, o, "DELETE", []string{"api", "v1", "sessions", sid}, nil, nil, noSuchSession, &res); !ok {
		return err
	}
	fmt.Fprintf(r.stdout, "Revoked session %s of %s at every edge.\n", cell(res.ID), cell(res.Subject))
	return nil
}

func (r *runner) usersRevoke(ctx context.Context, c *client, o *options, user string) error {
	var res admin.RevokeResult
	if ok, err := r.fetch(ctx, c, o, "POST", []string{"api", "v1", "users", user, "revoke"}, nil, nil, noSuchUser, &res); !ok {
		return err
	}
	fmt.Fprintf(r.stdout, "Revoked user %s%s: tokens issued until now are refused at every edge; %d stored session(s) deleted.\n",
		display(res.User, res.Subject), matched(res.Subject, res.MatchedBy), res.Sessions)
	return nil
}

func (r *runner) groupsSet(ctx context.Context, c *client, o *options, user string, lists []string) error {
	groups := splitFlag(lists)
	var res admin.GroupsResult
	if ok, err := r.fetch(ctx, c, o, "PUT", []string{"api", "v1", "users", user, "groups"}, nil, map[string][]string{"groups": groups}, noSuchUser, &res); !ok {
		return err
	}
	set := "none"
	if res.Groups != nil && len(*res.Groups) > 0 {
		set = strings.Join(*res.Groups, ", ")
	}
	fmt.Fprintf(r.stdout, "Set the groups of %s%s at every edge: %s.\n", display(res.User, res.Subject), matched(res.Subject, res.MatchedBy), sanitize(set))
	return nil
}

func (r *runner) groupsClear(ctx context.Context, c *client, o *options, user string) error {
	var res admin.GroupsResult
	if ok, err := r.fetch(ctx, c, o, "DELETE", []string{"api", "v1", "users", user, "groups"}, nil, nil, noSuchUser, &res); !ok {
		return err
	}
	fmt.Fprintf(r.stdout, "Cleared the group override of %s%s; tokens keep the groups they were issued with.\n",
		display(res.User, user), matched(res.Subject, res.MatchedBy))
	return nil
}

// forwardAuthRegex prints the authResponseHeadersRegex for /verify with the
// given header settings; without any, /verify's defaults.
func (r *runner) forwardAuthRegex(o *options) error {
	h := o.headers
	if h == nil {
		h = map[string]string{"userHeader": verify.HeaderUser, "emailHeader": verify.HeaderEmail,
			"groupsHeader": verify.HeaderGroups, "nameHeader": verify.HeaderName}
	}
	p, err := policy.Compile(policy.Rules{
		UserHeader: h["userHeader"], EmailHeader: h["emailHeader"], GroupsHeader: h["groupsHeader"],
		NameHeader: h["nameHeader"], SubjectHeader: h["subjectHeader"], StripHeaders: o.stripHeaders,
	})
	if err != nil {
		var fe *policy.FieldError
		if errors.As(err, &fe) {
			return &usageError{fmt.Sprintf("forwardauth-regex: --%s: %s", fe.Field, fe.Msg)}
		}
		return &usageError{"forwardauth-regex: " + err.Error()}
	}
	fmt.Fprintln(r.stdout, p.ForwardAuthRegex())
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

const noSuchKey = "list the keys with `edgepass keys list`"

func (r *runner) keysList(ctx context.Context, c *client, o *options) error {
	var l admin.KeyList
	if ok, err := r.fetch(ctx, c, o, "GET", []string{"api", "v1", "keys"}, nil, nil, "", &l); !ok {
		return err
	}
	fmt.Fprintf(r.stdout, "Trust anchor: %s (id %s); configure every edgepass middleware with trustAnchors: [%s]\n", cell(l.Anchor), cell(l.AnchorID), cell(l.Anchor))
	fmt.Fprintf(r.stdout, "Longest token lifetime edges accept: %s\n\n", time.Duration(l.MaxTokenLifetime)*time.Second)
	rows := make([][]string, 0, len(l.Keys))
	for _, k := range l.Keys {
		rows = append(rows, []string{cell(k.ID), cell(k.State), stamp(k.Created), stamp(k.Activated),
			stamp(k.Retired), stamp(k.Revoked), stamp(k.RemoveAfter)})
	}
	return r.table("", "KID\tSTATE\tCREATED\tACTIVATED\tRETIRED\tREVOKED\tREMOVED AFTER", rows)
}

func (r *runner) keysRevoke(ctx context.Context, c *client, o *options, kid string) error {
	var res admin.KeyRevokeResult
	if ok, err := r.fetch(ctx, c, o, "POST", []string{"api", "v1", "keys", kid, "revoke"}, nil, nil, noSuchKey, &res); !ok {
		return err
	}
	fmt.Fprintf(r.stdout, "Revoked key %s: every edge refuses its tokens from now on; %d session(s) it signed ended.\n", cell(res.KeyID), res.Sessions)
	if res.WasActive {
		fmt.Fprintf(r.stdout, "It was the signing key; new tokens are signed with %s.\n", cell(res.SigningKeyID))
	}
	return nil
}

// keysAnchor prints only the anchor, for scripts (plugin trustAnchors).
func (r *runner) keysAnchor(ctx context.Context, c *client, o *options) error {
	var l admin.KeyList
	if ok, err := r.fetch(ctx, c, o, "GET", []string{"api", "v1", "keys"}, nil, nil, "", &l); !ok {
		return err
	}
	if l.Anchor == "" {
		return fmt.Errorf("admin API at %s: the daemon reported no trust anchor; is it as new as the CLI?", c.base)
	}
	fmt.Fprintln(r.stdout, sanitize(l.Anchor))
	return nil
}

func (r *runner) edges(ctx context.Context, c *client, o *options) error {
	var l admin.EdgeList
	if ok, err := r.fetch(ctx, c, o, "GET", []string{"api", "v1", "edges"}, nil, nil, "", &l); !ok {
		return err
	}
	rows := make([][]string, 0, len(l.Edges))
	for _, e := range l.Edges {
		synced := "no"
		if e.Synced {
			synced = "yes"
		}
		seen := r.since(e.Received)
		if e.Stale {
			seen += " (stale)"
		}
		version := e.Version
		if version == "" {
			version = "-"
		}
		rows = append(rows, []string{cell(e.Replica), cell(version), cell(e.Bucket), synced, fmt.Sprint(e.Seq), fmt.Sprint(e.Behind),
			ago(time.Duration(e.HeardAgoMs) * time.Millisecond), seen, fmt.Sprint(e.RevokedSessions), fmt.Sprint(e.RevokedUsers), fmt.Sprint(e.Groups), fmt.Sprint(e.Rejected)})
	}
	return r.table("No edge replica has reported yet (edges publish a heartbeat every 5s once connected to NATS).",
		"REPLICA\tVERSION\tBUCKET\tSYNCED\tSEQ\tBEHIND\tNATS HEARD\tLAST SEEN\tREVOKED SESSIONS\tREVOKED USERS\tGROUPS\tREJECTED", rows)
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
