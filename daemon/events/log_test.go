package events_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/edgepass/edgepass/daemon/events"
	"github.com/edgepass/edgepass/daemon/internal/natstest"
)

func openLog(t *testing.T, o events.Options) (*events.Log, *natstest.Server) {
	t.Helper()
	srv := natstest.Start(t)
	l, err := events.Open(natstest.Context(t), srv.JS, o)
	if err != nil {
		t.Fatal(err)
	}
	return l, srv
}

func appendN(t *testing.T, l *events.Log, evs []events.Event) {
	t.Helper()
	ctx := natstest.Context(t)
	for _, e := range evs {
		if _, err := l.Append(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
}

// sample builds n events cycling through users, kinds and sources.
func sample(n int) []events.Event {
	users := []string{"alice", "bob", "carol"}
	kinds := []string{events.KindSessionRevoked, events.KindGroupsSet, events.KindUserRevoked}
	sources := []string{events.SourceConsole, events.SourceAPI, events.SourceCLI, events.SourceRefresh}
	out := make([]events.Event, n)
	for i := range out {
		out[i] = events.Event{
			Time: time.Unix(int64(1_700_000_000+i), 0).UTC(), Kind: kinds[i%len(kinds)], Source: sources[i%len(sources)],
			Actor: "admin-" + users[(i+1)%len(users)], ActorType: events.ActorAdmin,
			User: users[i%len(users)], Subject: "sub-" + users[i%len(users)], Detail: fmt.Sprint("n=", i),
		}
	}
	return out
}

func details(p events.Page) []string {
	var out []string
	for _, e := range p.Events {
		out = append(out, e.Detail)
	}
	return out
}

func TestQueryFiltersAndOrder(t *testing.T) {
	l, _ := openLog(t, events.Options{})
	all := sample(30)
	appendN(t, l, all)
	ctx := natstest.Context(t)
	want := func(f events.Filter, match func(i int, e events.Event) bool) []string {
		var out []string
		for i := len(all) - 1; i >= 0; i-- {
			if match(i, all[i]) {
				out = append(out, all[i].Detail)
			}
		}
		if f.Limit > 0 && len(out) > f.Limit {
			out = out[:f.Limit]
		}
		return out
	}
	cases := []struct {
		name  string
		f     events.Filter
		match func(i int, e events.Event) bool
	}{
		{"everything, newest first", events.Filter{}, func(int, events.Event) bool { return true }},
		{"by kind (on the server)", events.Filter{Kind: events.KindGroupsSet}, func(_ int, e events.Event) bool { return e.Kind == events.KindGroupsSet }},
		{"by source (on the server)", events.Filter{Source: events.SourceCLI}, func(_ int, e events.Event) bool { return e.Source == events.SourceCLI }},
		{"by user, any case, finds the user", events.Filter{User: "BOB"}, func(_ int, e events.Event) bool { return e.User == "bob" || e.Actor == "admin-bob" }},
		{"by exact actor", events.Filter{Actor: "ADMIN-carol"}, func(_ int, e events.Event) bool { return e.Actor == "admin-carol" }},
		{"kind and source and user", events.Filter{Kind: events.KindSessionRevoked, Source: events.SourceConsole, User: "alice"},
			func(_ int, e events.Event) bool {
				return e.Kind == events.KindSessionRevoked && e.Source == events.SourceConsole && (e.User == "alice" || e.Actor == "admin-alice")
			}},
		{"limit", events.Filter{Limit: 4}, func(int, events.Event) bool { return true }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p, err := l.Query(ctx, c.f)
			if err != nil {
				t.Fatal(err)
			}
			got, exp := details(p), want(c.f, c.match)
			if strings.Join(got, ",") != strings.Join(exp, ",") {
				t.Fatalf("got %v\nwant %v", got, exp)
			}
			if p.Last != uint64(len(all)) {
				t.Errorf("Last = %d, want %d", p.Last, len(all))
			}
		})
	}
}

// TestQueryCursorPagesThroughEverythingOnce walks Before cursors across
// several scan windows and checks every matching event comes exactly once.
func TestQueryCursorPagesThroughEverythingOnce(t *testing.T) {
	l, _ := openLog(t, events.Options{})
	all := sample(700) // more than two scan windows
	appendN(t, l, all)
	ctx := natstest.Context(t)
	for _, f := range []events.Filter{{Limit: 37}, {Limit: 50, User: "carol"}, {Limit: 500, Kind: events.KindUserRevoked}} {
		seen := map[string]bool{}
		var order []uint64
		cursor := uint64(0)
		for pages := 0; ; pages++ {
			if pages > 100 {
				t.Fatal("cursor does not end")
			}
			q := f
			q.Before = cursor
			p, err := l.Query(ctx, q)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range p.Events {
				if seen[e.Detail] {
					t.Fatalf("%+v: %s returned twice", f, e.Detail)
				}
				seen[e.Detail] = true
				order = append(order, e.Seq)
			}
			if p.Next == 0 {
				break
			}
			cursor = p.Next
		}
		n := 0
		for _, e := range all {
			if f.Match(e) {
				n++
			}
		}
		if len(seen) != n {
			t.Errorf("%+v: paged through %d events, want %d", f, len(seen), n)
		}
		for i := 1; i < len(order); i++ {
			if order[i] >= order[i-1] {
				t.Fatalf("%+v: not newest first at %d: %d after %d", f, i, order[i], order[i-1])
			}
		}
	}
}

// TestQueryAfterFollowsNewEvents is what `edgepass events --follow` and the
// console's live view do: start at Last, then ask for what came after.
func TestQueryAfterFollowsNewEvents(t *testing.T) {
	l, _ := openLog(t, events.Options{})
	ctx := natstest.Context(t)
	appendN(t, l, sample(5))
	p, err := l.Query(ctx, events.Filter{Limit: 1})
	if err != nil {
		t.Fatal(err)
	}
	cursor := p.Last
	p, err = l.Query(ctx, events.Filter{After: cursor})
	if err != nil || len(p.Events) != 0 || p.Next != cursor {
		t.Fatalf("nothing new: got %d events, next %d (err %v); want none, next %d", len(p.Events), p.Next, err, cursor)
	}
	more := sample(9)[5:]
	appendN(t, l, more)
	p, err = l.Query(ctx, events.Filter{After: cursor, User: "bob"})
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, e := range more {
		if (events.Filter{User: "bob"}).Match(e) {
			want = append(want, e.Detail)
		}
	}
	if strings.Join(details(p), ",") != strings.Join(want, ",") {
		t.Fatalf("after: got %v, want %v (oldest first)", details(p), want)
	}
	if p.Next != 9 {
		t.Errorf("next = %d, want 9 (the last event scanned, matching or not)", p.Next)
	}
}

func TestRecordFillsActorFromContextAndWritesJSONLines(t *testing.T) {
	var out bytes.Buffer
	fixed := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	l, _ := openLog(t, events.Options{Stdout: &out, Now: func() time.Time { return fixed }})
	ctx := events.WithActor(natstest.Context(t), events.Actor{Name: "alice", Type: events.ActorAdmin, Source: events.SourceConsole, Reason: "left the company\n[fake] line"})
	l.Record(ctx, events.Event{Kind: events.KindUserRevoked, User: "bob", Subject: "sub-bob"})
	p, err := l.Query(natstest.Context(t), events.Filter{})
	if err != nil || len(p.Events) != 1 {
		t.Fatalf("query: %v, %d events", err, len(p.Events))
	}
	e := p.Events[0]
	if e.Actor != "alice" || e.ActorType != events.ActorAdmin || e.Source != events.SourceConsole || !e.Time.Equal(fixed) || e.Seq != 1 {
		t.Fatalf("stored %+v", e)
	}
	if e.Reason != "left the company [fake] line" {
		t.Errorf("reason %q: control characters must not survive (log injection)", e.Reason)
	}
	var line events.Event
	if err := json.Unmarshal(bytes.TrimSpace(out.Bytes()), &line); err != nil || strings.Count(out.String(), "\n") != 1 {
		t.Fatalf("stdout is not one JSON line: %q (%v)", out.String(), err)
	}
	if line.Actor != "alice" || line.Seq != 1 || line.Kind != events.KindUserRevoked {
		t.Errorf("stdout line %+v", line)
	}
}

func TestRecordWithoutActorNamesTheDaemon(t *testing.T) {
	l, _ := openLog(t, events.Options{})
	l.Record(context.Background(), events.Event{Kind: events.KindKeyRotated, Source: events.SourceSchedule, KeyID: "k1"})
	p, err := l.Query(natstest.Context(t), events.Filter{})
	if err != nil || len(p.Events) != 1 {
		t.Fatal(err)
	}
	if e := p.Events[0]; e.Actor != events.DaemonActor || e.ActorType != events.ActorDaemon {
		t.Errorf("actor %q/%q, want edgepass/daemon", e.Actor, e.ActorType)
	}
}

// TestAppendRefusesUnknownKindsAndSources keeps subjects to the known
// tokens: a kind like "a.>" would otherwise change what a filter means.
func TestAppendRefusesUnknownKindsAndSources(t *testing.T) {
	l, _ := openLog(t, events.Options{})
	ctx := natstest.Context(t)
	for _, e := range []events.Event{
		{Kind: "a.>", Source: events.SourceAPI},
		{Kind: events.KindGroupsSet, Source: "*"},
		{Kind: events.KindGroupsSet, Source: ""},
		// Only an administrator issues or revokes a service token.
		{Kind: events.KindServiceTokenCreated, Source: events.SourceUser},
		{Kind: events.KindServiceTokenRevoked, Source: events.SourceSchedule},
	} {
		if _, err := l.Append(ctx, e); err == nil {
			t.Errorf("Append(%q, %q) accepted", e.Kind, e.Source)
		}
	}
	for _, src := range events.AdminSources {
		if _, err := l.Append(ctx, events.Event{Kind: events.KindServiceTokenRevoked, Source: src, Actor: "alice"}); err != nil {
			t.Errorf("service_token_revoked from %s refused: %v", src, err)
		}
	}
}

// TestKindSources: every kind may come from the sources it lists, and
// only those; the service-token kinds only from an administrator's channel.
func TestKindSources(t *testing.T) {
	for _, k := range events.Kinds {
		for _, s := range events.Sources {
			want := true
			if k == events.KindServiceTokenCreated || k == events.KindServiceTokenRevoked {
				want = slices.Contains(events.AdminSources, s)
			}
			if got := events.ValidFor(k, s); got != want {
				t.Errorf("ValidFor(%s, %s) = %v, want %v", k, s, got, want)
			}
		}
	}
	if events.ValidFor("nope", events.SourceAPI) || events.ValidFor(events.KindGroupsSet, "nope") {
		t.Error("ValidFor accepted an unknown kind or source")
	}
}

func TestRetentionLimitsAreApplied(t *testing.T) {
	srv := natstest.Start(t)
	ctx := natstest.Context(t)
	if _, err := events.Open(ctx, srv.JS, events.Options{Stream: "audit", MaxAge: time.Hour, MaxBytes: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	// Reopening with other limits updates the stream (a configuration change).
	if _, err := events.Open(ctx, srv.JS, events.Options{Stream: "audit", MaxAge: 48 * time.Hour, MaxBytes: 2 << 20}); err != nil {
		t.Fatal(err)
	}
	st, err := srv.JS.Stream(ctx, "audit")
	if err != nil {
		t.Fatal(err)
	}
	cfg := st.CachedInfo().Config
	if cfg.MaxAge != 48*time.Hour || cfg.MaxBytes != 2<<20 {
		t.Errorf("limits %s/%d, want 48h/2MiB", cfg.MaxAge, cfg.MaxBytes)
	}
	if cfg.Subjects[0] != "edgepass.events.audit.>" {
		t.Errorf("subjects %v", cfg.Subjects)
	}
}

func TestQueryLeavesNoConsumersBehind(t *testing.T) {
	l, srv := openLog(t, events.Options{})
	appendN(t, l, sample(10))
	ctx := natstest.Context(t)
	for i := 0; i < 5; i++ {
		if _, err := l.Query(ctx, events.Filter{User: "alice"}); err != nil {
			t.Fatal(err)
		}
	}
	st, err := srv.JS.Stream(ctx, events.DefaultStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Consumers != 0 {
		t.Errorf("%d consumers left on the stream", info.State.Consumers)
	}
}
