package admin

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgepass/edgepass/daemon/edgepub"
	"github.com/edgepass/edgepass/daemon/events"
	"github.com/edgepass/edgepass/plugin/token"
)

const (
	ciToken  = "ci-token-0123456789abcdef"
	opsToken = "ops-token-0123456789abcdef"
)

// fakeAudit remembers what was recorded and answers queries from it.
type fakeAudit struct {
	mu     sync.Mutex
	events []events.Event
	last   events.Filter
}

func (a *fakeAudit) Record(ctx context.Context, e events.Event) {
	a.mu.Lock()
	defer a.mu.Unlock()
	e = events.Complete(ctx, e, t0)
	e.Seq = uint64(len(a.events) + 1)
	a.events = append(a.events, e)
}

func (a *fakeAudit) Query(_ context.Context, f events.Filter) (events.Page, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.last = f
	p := events.Page{Events: []events.Event{}, Last: uint64(len(a.events))}
	for i := len(a.events) - 1; i >= 0; i-- {
		if f.Match(a.events[i]) {
			p.Events = append(p.Events, a.events[i])
		}
	}
	return p, nil
}

func (a *fakeAudit) all() []events.Event {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]events.Event(nil), a.events...)
}

type fakeOverrides []edgepub.Override

func (f fakeOverrides) AdminOverrides(context.Context) ([]edgepub.Override, error) { return f, nil }

// newAuditFixture is newFixture with named tokens, an audit trail and
// overrides.
func newAuditFixture(t *testing.T) (*fixture, *fakeAudit) {
	t.Helper()
	f := newFixture(t)
	audit := &fakeAudit{}
	f.serve(t, Options{
		Token: testToken, Store: f.store, Edge: clearingEdge{f.edge}, Keys: f.keys, Edges: fakeEdges{},
		Tokens: []Token{{Name: "ci", Secret: ciToken, ReadOnly: true}, {Name: "ops", Secret: opsToken}},
		Audit:  audit, Events: audit,
		Overrides: fakeOverrides{
			{SubjectKey: token.SubjectKey("alice"), Groups: []string{"admins"}, At: t0},
			{SubjectKey: token.SubjectKey("nobody-known"), Groups: []string{"x"}, At: t0.Add(time.Minute)},
		},
	})
	return f, audit
}

// TestReadOnlyTokenRefusedOnEveryChange: a read-only token (say a
// monitoring job's, leaked) tries every change the API offers.
func TestReadOnlyTokenRefusedOnEveryChange(t *testing.T) {
	f, audit := newAuditFixture(t)
	for _, c := range []struct{ method, path, body string }{
		{"DELETE", "/api/v1/sessions/sid-a1", ""},
		{"POST", "/api/v1/users/alice/revoke", ""},
		{"PUT", "/api/v1/users/alice/groups", `{"groups":["admins"]}`},
		{"DELETE", "/api/v1/users/alice/groups", ""},
		{"POST", "/api/v1/keys/rotate", ""},
		{"POST", "/api/v1/keys/kidA/revoke", ""},
	} {
		r := f.do(t, c.method, c.path, "Bearer "+ciToken, c.body)
		if r.status != http.StatusForbidden || !strings.Contains(r.errorMsg(t), "read-only") {
			t.Errorf("%s %s with the read-only token: %d %s, want 403", c.method, c.path, r.status, r.body)
		}
	}
	if len(f.edge.calls) != 0 || f.keys.n != 0 || len(f.keys.revoked) != 0 || f.store.Len() != 3 || len(audit.all()) != 0 {
		t.Fatalf("a read-only token changed something: edge %v, rotations %d, revoked %v, sessions %d, events %d",
			f.edge.calls, f.keys.n, f.keys.revoked, f.store.Len(), len(audit.all()))
	}
	for _, path := range []string{"/api/v1/sessions", "/api/v1/edges", "/api/v1/keys", "/api/v1/events", "/api/v1/groups"} {
		if r := f.do(t, "GET", path, "Bearer "+ciToken, ""); r.status != http.StatusOK {
			t.Errorf("GET %s with the read-only token: %d, want 200", path, r.status)
		}
	}
}

func TestEveryChangeNamesItsActorSourceAndReason(t *testing.T) {
	f, audit := newAuditFixture(t)
	steps := []struct {
		method, path, token, source, body string
		kind, actor, actorSource, user    string
	}{
		{"DELETE", "/api/v1/sessions/sid-a1?reason=laptop+stolen", opsToken, "", "", events.KindSessionRevoked, "ops", events.SourceAPI, "alice"},
		{"POST", "/api/v1/users/bob/revoke", testToken, "cli", "", events.KindUserRevoked, LegacyTokenName, events.SourceCLI, "bob"},
		{"PUT", "/api/v1/users/alice/groups", opsToken, "CLI", `{"groups":["admins","staff"]}`, events.KindGroupsSet, "ops", events.SourceCLI, "alice"},
		{"DELETE", "/api/v1/users/alice/groups", opsToken, "console", "", events.KindGroupsCleared, "ops", events.SourceAPI, "alice"}, // only "cli" is a label the API takes
		{"POST", "/api/v1/keys/rotate", opsToken, "", "", events.KindKeyRotated, "ops", events.SourceAPI, ""},
		{"POST", "/api/v1/keys/kidB/revoke", testToken, "", "", events.KindKeyRevoked, LegacyTokenName, events.SourceAPI, ""},
	}
	for _, s := range steps {
		req, _ := http.NewRequest(s.method, f.srv.URL+s.path, strings.NewReader(s.body))
		req.Header.Set("Authorization", "Bearer "+s.token)
		if s.source != "" {
			req.Header.Set(SourceHeader, s.source)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s %s: %d", s.method, s.path, resp.StatusCode)
		}
	}
	got := audit.all()
	if len(got) != len(steps) {
		t.Fatalf("%d events for %d changes: %+v", len(got), len(steps), got)
	}
	for i, s := range steps {
		e := got[i]
		if e.Kind != s.kind || e.Actor != s.actor || e.ActorType != events.ActorToken || e.Source != s.actorSource || e.User != s.user {
			t.Errorf("step %d (%s %s): event %+v; want kind %s actor %s source %s user %s", i, s.method, s.path, e, s.kind, s.actor, s.actorSource, s.user)
		}
	}
	if got[0].Reason != "laptop stolen" || got[0].SessionID != "sid-a1" {
		t.Errorf("session event reason %q sid %q", got[0].Reason, got[0].SessionID)
	}
	if got[1].Subject != "bob/x" || got[2].Detail != "groups: admins, staff" {
		t.Errorf("user event %+v, groups event %+v", got[1], got[2])
	}
	if !strings.Contains(got[5].Detail, "signing key") {
		t.Errorf("key revoke detail %q", got[5].Detail)
	}
}

func TestEventsAPIFiltersAndValidates(t *testing.T) {
	f, audit := newAuditFixture(t)
	f.do(t, "POST", "/api/v1/users/bob/revoke", "Bearer "+opsToken, "")
	f.do(t, "POST", "/api/v1/keys/rotate", "Bearer "+opsToken, "")
	r := f.do(t, "GET", "/api/v1/events?user=BOB&kind=user_revoked&source=api&before=10&limit=5", "Bearer "+ciToken, "")
	var p events.Page
	r.json(t, &p)
	if r.status != 200 || len(p.Events) != 1 || p.Events[0].User != "bob" {
		t.Fatalf("events: %d %s", r.status, r.body)
	}
	if want := (events.Filter{User: "BOB", Kind: "user_revoked", Source: "api", Before: 10, Limit: 5}); audit.last != want {
		t.Errorf("filter %+v, want %+v", audit.last, want)
	}
	for _, q := range []string{"kind=nope", "source=*", "before=x", "after=-1", "limit=0", "limit=100000", "before=3&after=2"} {
		if r := f.do(t, "GET", "/api/v1/events?"+q, "Bearer "+ciToken, ""); r.status != http.StatusBadRequest {
			t.Errorf("?%s: %d, want 400", q, r.status)
		}
	}
}

func TestGroupsAPIListsOverridesNamedFromSessionsAndEvents(t *testing.T) {
	f, _ := newAuditFixture(t)
	r := f.do(t, "GET", "/api/v1/groups", "Bearer "+ciToken, "")
	var l OverrideList
	r.json(t, &l)
	if len(l.Overrides) != 2 {
		t.Fatalf("overrides: %s", r.body)
	}
	byKey := map[string]Override{}
	for _, o := range l.Overrides {
		byKey[o.SubjectKey] = o
	}
	if o := byKey[token.SubjectKey("alice")]; o.Subject != "alice" || o.User != "alice" {
		t.Errorf("alice's override not named from her session: %+v", o)
	}
	if o := byKey[token.SubjectKey("nobody-known")]; o.Subject != "" {
		t.Errorf("unknown subject named: %+v", o)
	}
}

// TestInternalRefusesRequestsWithoutAnActor: the console's entry into the
// API must never serve a request that did not come through its own
// authentication (no actor in the context).
func TestInternalRefusesRequestsWithoutAnActor(t *testing.T) {
	f, audit := newAuditFixture(t)
	in := f.h.Internal()
	rec := httptest.NewRecorder()
	in.ServeHTTP(rec, httptest.NewRequest("POST", "/api/v1/keys/rotate", nil))
	if rec.Code != http.StatusUnauthorized || f.keys.n != 0 {
		t.Fatalf("without actor: %d, rotations %d", rec.Code, f.keys.n)
	}
	req := httptest.NewRequest("POST", "/api/v1/keys/rotate", nil)
	req = req.WithContext(events.WithActor(req.Context(), events.Actor{Name: "alice", Type: events.ActorAdmin, Source: events.SourceConsole, Reason: "routine"}))
	rec = httptest.NewRecorder()
	in.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK || f.keys.n != 1 {
		t.Fatalf("with actor: %d %s", rec.Code, rec.Body)
	}
	e := audit.all()[0]
	if e.Actor != "alice" || e.ActorType != events.ActorAdmin || e.Source != events.SourceConsole || e.Reason != "routine" {
		t.Errorf("event %+v", e)
	}
	var res RotateResult
	if err := json.Unmarshal(rec.Body.Bytes(), &res); err != nil || res.KeyID == "" {
		t.Errorf("answer %s", rec.Body)
	}
}
