package cli

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/edgepass/edgepass/daemon/admin"
	"github.com/edgepass/edgepass/daemon/events"
)

// followInterval is how often `events --follow` asks for new events.
var followInterval = time.Second

// changeCommands are the commands that change something: --reason goes
// with them into the audit trail.
var changeCommands = []string{"sessions revoke", "users revoke", "groups set", "groups clear", "keys rotate", "keys revoke",
	"tokens create", "tokens revoke"}

// checkEventFlags refuses the events flags on other commands, and
// --reason on commands that change nothing.
func checkEventFlags(o *options, cmd string) error {
	if cmd != "events" && (o.follow || o.kind != "" || o.source != "" || o.actor != "" || o.limit != "") {
		return &usageError{"--follow, --kind, --source, --actor and --limit only apply to events"}
	}
	if o.reason != "" && !slices.Contains(changeCommands, cmd) {
		return &usageError{"--reason only applies to commands that change something: " + strings.Join(changeCommands, ", ")}
	}
	if cmd != "events" {
		return nil
	}
	if _, msg := admin.ParseEventFilter(o.eventQuery()); msg != "" {
		return &usageError{msg}
	}
	if o.sub {
		return &usageError{"--sub does not apply to events (--user matches subs too)"}
	}
	return nil
}

func (o *options) eventQuery() url.Values {
	q := url.Values{}
	for k, v := range map[string]string{"user": o.user, "actor": o.actor, "kind": o.kind, "source": o.source, "limit": o.limit} {
		if v != "" {
			q.Set(k, v)
		}
	}
	return q
}

func (r *runner) events(ctx context.Context, c *client, o *options) error {
	q := o.eventQuery()
	if !o.follow {
		var p events.Page
		if ok, err := r.fetch(ctx, c, o, "GET", []string{"api", "v1", "events"}, q, nil, "", &p); !ok {
			return err
		}
		if len(p.Events) == 0 {
			fmt.Fprintln(r.stdout, "No events.")
			return nil
		}
		rows := make([][]string, 0, len(p.Events))
		for _, e := range p.Events {
			rows = append(rows, eventCells(e))
		}
		if err := r.table("", "TIME\tKIND\tACTOR\tSOURCE\tUSER\tREASON / DETAIL", rows); err != nil {
			return err
		}
		if p.Next > 0 {
			fmt.Fprintf(r.stdout, "Older events: the API's before=%d (GET /api/v1/events?before=%d).\n", p.Next, p.Next)
		}
		return nil
	}
	// Follow: the latest events oldest first, then whatever comes after.
	var p events.Page
	if err := r.get(ctx, c, []string{"api", "v1", "events"}, q, &p); err != nil {
		return err
	}
	slices.Reverse(p.Events)
	if err := r.printEvents(o, p.Events); err != nil {
		return err
	}
	cursor := p.Last
	q.Del("limit")
	t := time.NewTicker(followInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		q.Set("after", strconv.FormatUint(cursor, 10))
		var next events.Page
		if err := r.get(ctx, c, []string{"api", "v1", "events"}, q, &next); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if err := r.printEvents(o, next.Events); err != nil {
			return err
		}
		cursor = max(cursor, next.Next)
	}
}

// get calls the API and decodes the answer, whatever --json says.
func (r *runner) get(ctx context.Context, c *client, segs []string, q url.Values, v any) error {
	data, err := c.call(ctx, "GET", segs, q, nil, "")
	if err != nil {
		return err
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("admin API at %s: unexpected answer: %v; is the CLI as new as the daemon?", c.base, err)
	}
	return nil
}

// printEvents writes events one per line: JSON with --json, else text.
func (r *runner) printEvents(o *options, list []events.Event) error {
	for _, e := range list {
		if o.json {
			b, err := json.Marshal(e)
			if err != nil {
				return err
			}
			if _, err := fmt.Fprintf(r.stdout, "%s\n", b); err != nil {
				return err
			}
			continue
		}
		if _, err := fmt.Fprintln(r.stdout, strings.Join(eventCells(e), "  ")); err != nil {
			return err
		}
	}
	return nil
}

// eventCells are an event's columns for a terminal (every value sanitized).
func eventCells(e events.Event) []string {
	who := cell(cmp.Or(e.User, e.Email, e.Subject))
	if e.SessionID != "" {
		who += " session " + cell(e.SessionID)
	}
	if e.KeyID != "" {
		who += " key " + cell(e.KeyID)
	}
	why := strings.TrimSpace(strings.Join(slices.DeleteFunc([]string{e.Reason, e.Detail}, func(s string) bool { return s == "" }), "; "))
	return []string{stamp(e.Time), cell(e.Kind), cell(e.Actor) + " (" + cell(e.ActorType) + ")", cell(e.Source), who, cell(why)}
}

func (r *runner) groupsList(ctx context.Context, c *client, o *options) error {
	var l admin.OverrideList
	if ok, err := r.fetch(ctx, c, o, "GET", []string{"api", "v1", "groups"}, nil, nil, "", &l); !ok {
		return err
	}
	rows := make([][]string, 0, len(l.Overrides))
	for _, ov := range l.Overrides {
		sub := ov.Subject
		if sub == "" {
			sub = "key " + ov.SubjectKey
		}
		groups := strings.Join(ov.Groups, ",")
		if groups == "" {
			groups = "(none)"
		}
		rows = append(rows, []string{cell(cmp.Or(ov.User, ov.Email)), cell(sub), cell(groups), stamp(ov.Set), stamp(ov.Expires)})
	}
	return r.table("No group override in force.", "USER\tSUBJECT\tGROUPS\tSET\tEXPIRES", rows)
}
