package admin

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/edgepass/edgepass/daemon/events"
	"github.com/edgepass/edgepass/daemon/internal/servicetokentest"
	"github.com/edgepass/edgepass/daemon/servicetoken"
	"github.com/edgepass/edgepass/daemon/session"
)

// serviceTokenManager issues service tokens into the fixture's store.
func serviceTokenManager(t *testing.T, f *fixture) *servicetoken.Manager {
	t.Helper()
	return servicetokentest.NewSigner("kidB").Manager(t, f.store, f.edge, f.keys.Horizon, func() time.Time { return t0 })
}

// withServiceTokens rebuilds the fixture's handler with the service-token routes.
func withServiceTokens(t *testing.T, f *fixture) {
	t.Helper()
	f.serve(t, Options{Token: testToken, Store: f.store, Edge: f.edge, Keys: f.keys, Edges: fakeEdges{}, ServiceTokens: serviceTokenManager(t, f)})
}

// TestServiceTokenEventsNameActorScopeAndNeverTheToken: creating and
// revoking a service token are recorded as service_token_created and
// service_token_revoked, with the actor, source, reason, and the token's
// name, audiences, groups and expiry; the token itself is in no event.
// A read-only token can do neither, and records nothing.
func TestServiceTokenEventsNameActorScopeAndNeverTheToken(t *testing.T) {
	f := newFixture(t)
	audit := &fakeAudit{}
	f.serve(t, Options{Token: testToken, Store: f.store, Edge: f.edge, Keys: f.keys, Edges: fakeEdges{},
		Tokens: []Token{{Name: "ci", Secret: ciToken, ReadOnly: true}, {Name: "ops", Secret: opsToken}},
		Audit:  audit, Events: audit, ServiceTokens: serviceTokenManager(t, f)})
	create := func(token, source, query, name string) (reply, servicetoken.Created) {
		t.Helper()
		req, _ := http.NewRequest("POST", f.srv.URL+"/api/v1/service-tokens"+query,
			strings.NewReader(`{"name":"`+name+`","groups":["billing","ops"],"expiresIn":"2h","audiences":["billing-api","reports"]}`))
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set(SourceHeader, source)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var c servicetoken.Created
		if resp.StatusCode == http.StatusCreated {
			if err := json.NewDecoder(resp.Body).Decode(&c); err != nil {
				t.Fatal(err)
			}
		}
		return reply{status: resp.StatusCode}, c
	}

	// Attack: a leaked read-only token tries to mint or revoke a service token.
	if r, _ := create(ciToken, "cli", "", "sneaky"); r.status != http.StatusForbidden {
		t.Fatalf("read-only create: %d", r.status)
	}
	r, c := create(opsToken, "cli", "?reason=nightly+billing+sync", "billing-sync")
	if r.status != http.StatusCreated || c.Token == "" {
		t.Fatalf("create: %d %+v", r.status, c)
	}
	if r := f.do(t, "DELETE", "/api/v1/service-tokens/"+c.ID, "Bearer "+ciToken, ""); r.status != http.StatusForbidden {
		t.Fatalf("read-only revoke: %d", r.status)
	}
	if r := f.do(t, "DELETE", "/api/v1/service-tokens/"+c.ID+"?reason=rotated", "Bearer "+testToken, ""); r.status != http.StatusOK {
		t.Fatalf("revoke: %d %s", r.status, r.body)
	}
	// `edgepass sessions revoke <id>` of a service token is recorded as one too.
	_, c2 := create(opsToken, "", "", "report-bot")
	if r := f.do(t, "DELETE", "/api/v1/sessions/"+c2.ID, "Bearer "+opsToken, ""); r.status != http.StatusOK {
		t.Fatalf("revoke through sessions: %d %s", r.status, r.body)
	}

	got := audit.all()
	want := []struct{ kind, actor, source, reason, name, id string }{
		{events.KindServiceTokenCreated, "ops", events.SourceCLI, "nightly billing sync", "billing-sync", c.ID},
		{events.KindServiceTokenRevoked, LegacyTokenName, events.SourceAPI, "rotated", "billing-sync", c.ID},
		{events.KindServiceTokenCreated, "ops", events.SourceAPI, "", "report-bot", c2.ID},
		{events.KindServiceTokenRevoked, "ops", events.SourceAPI, "", "report-bot", c2.ID},
	}
	if len(got) != len(want) {
		t.Fatalf("%d events, want %d (the read-only token's attempts record nothing): %+v", len(got), len(want), got)
	}
	for i, w := range want {
		e := got[i]
		if e.Kind != w.kind || e.Actor != w.actor || e.ActorType != events.ActorToken || e.Source != w.source || e.Reason != w.reason ||
			e.User != w.name || e.Subject != "service:"+w.name || e.SessionID != session.Short(w.id) {
			t.Errorf("event %d: %+v, want %+v", i, e, w)
		}
		if !events.ValidFor(e.Kind, e.Source) {
			t.Errorf("event %d: %s from %s would be refused by the stream", i, e.Kind, e.Source)
		}
		for _, part := range []string{"service token " + w.name, "audiences: billing-api, reports", "groups: billing, ops", "expires " + t0.Add(2*time.Hour).Format(time.RFC3339)} {
			if !strings.Contains(e.Detail, part) {
				t.Errorf("event %d detail %q lacks %q", i, e.Detail, part)
			}
		}
		b, _ := json.Marshal(e)
		for _, tok := range []string{c.Token, c2.Token, c.ID, c2.ID} {
			if strings.Contains(string(b), tok) {
				t.Errorf("event %d holds a token or a whole id: %s", i, b)
			}
		}
	}
	if f.store.Has(c.ID) || f.store.Has(c2.ID) {
		t.Error("a revoked service token is still stored")
	}
}

func TestServiceTokensAPI(t *testing.T) {
	f := newFixture(t)
	if r := f.do(t, "GET", "/api/v1/service-tokens", "Bearer "+testToken, ""); r.status != http.StatusNotFound {
		t.Fatalf("without ServiceTokens: %d", r.status)
	}
	withServiceTokens(t, f)
	r := f.do(t, "POST", "/api/v1/service-tokens", "Bearer "+testToken, `{"name":"billing-sync","groups":["billing"],"expiresIn":"2h","audiences":["billing"]}`)
	if r.status != http.StatusCreated {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	var c servicetoken.Created
	r.json(t, &c)
	if c.Token == "" || c.Subject != "service:billing-sync" || !c.ExpiresAt.Equal(t0.Add(2*time.Hour)) {
		t.Fatalf("created %+v", c)
	}
	// Listed with the sessions and on its own, never with the token.
	for _, path := range []string{"/api/v1/service-tokens", "/api/v1/sessions"} {
		r = f.do(t, "GET", path, "Bearer "+testToken, "")
		if r.status != http.StatusOK || !strings.Contains(string(r.body), c.ID) || strings.Contains(string(r.body), c.Token) || !strings.Contains(string(r.body), `"kind": "service"`) {
			t.Fatalf("%s: %d %s", path, r.status, r.body)
		}
	}
	var l ServiceTokenList
	f.do(t, "GET", "/api/v1/service-tokens", "Bearer "+testToken, "").json(t, &l)
	if len(l.Tokens) != 1 {
		t.Fatalf("service tokens listed: %d (browser sessions must not be)", len(l.Tokens))
	}
	// Refused input says why.
	r = f.do(t, "POST", "/api/v1/service-tokens", "Bearer "+testToken, `{"name":"x","audiences":["a"],"expiresIn":"48h"}`)
	if r.status != http.StatusBadRequest || !strings.Contains(r.errorMsg(t), "at most 12h") {
		t.Fatalf("too long: %d %s", r.status, r.body)
	}
	r = f.do(t, "POST", "/api/v1/service-tokens", "Bearer "+testToken, `{"name":"x","audiences":["a"],"scope":"all"}`)
	if r.status != http.StatusBadRequest {
		t.Fatalf("unknown field: %d %s", r.status, r.body)
	}
	// Revoke: a session revocation at every edge, until the token's exp.
	r = f.do(t, "DELETE", "/api/v1/service-tokens/"+c.ID, "Bearer "+testToken, "")
	if r.status != http.StatusOK {
		t.Fatalf("revoke: %d %s", r.status, r.body)
	}
	f.edge.mu.Lock()
	calls := f.edge.calls
	f.edge.mu.Unlock()
	if len(calls) != 1 || calls[0].op != "session" || calls[0].key != c.ID || !calls[0].t.Equal(c.ExpiresAt) {
		t.Fatalf("edge calls %+v", calls)
	}
	if r := f.do(t, "DELETE", "/api/v1/service-tokens/"+c.ID, "Bearer "+testToken, ""); r.status != http.StatusNotFound {
		t.Fatalf("second revoke: %d", r.status)
	}
	// A browser session is not revoked through this route.
	if r := f.do(t, "DELETE", "/api/v1/service-tokens/sid-a1", "Bearer "+testToken, ""); r.status != http.StatusNotFound {
		t.Fatalf("browser session through service-tokens: %d", r.status)
	}
	if r := f.do(t, "POST", "/api/v1/service-tokens", "", `{}`); r.status != http.StatusUnauthorized {
		t.Fatalf("without the admin token: %d", r.status)
	}
}
