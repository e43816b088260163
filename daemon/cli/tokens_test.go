package cli

import (
	"crypto/ed25519"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/edgepass/edgepass/daemon/admin"
	"github.com/edgepass/edgepass/daemon/events"
	"github.com/edgepass/edgepass/daemon/internal/servicetokentest"
	jwt "github.com/edgepass/edgepass/plugin/token"
)

func TestTokensCreateListRevoke(t *testing.T) {
	f := newFixture(t)
	signer := servicetokentest.NewSigner("kidB")
	m := signer.Manager(t, f.store, f.edge, f.keys.Horizon, func() time.Time { return t0 })
	h, err := admin.New(admin.Options{Token: token, Store: f.store, Edge: f.edge, Keys: f.keys, Edges: edges{}, ServiceTokens: m})
	if err != nil {
		t.Fatal(err)
	}
	f.srv = httptest.NewServer(h)
	defer f.srv.Close()

	r := f.run("tokens", "create", "billing-sync", "--audiences=billing", "--groups", "billing,ops", "--expiresIn=2h")
	if r.code != ExitOK {
		t.Fatalf("create: exit %d: %s", r.code, r.stderr)
	}
	raw := strings.TrimSpace(r.stdout)
	c, err := (&jwt.Verifier{Audience: jwt.ServiceAudience}).Verify(raw, jwt.NewKeySet(jwt.Key{ID: signer.KeyID, Public: signer.Key.Public().(ed25519.PublicKey)}), t0)
	if err != nil || c.Subject != "service:billing-sync" || strings.Join(c.Groups, ",") != "billing,ops" {
		t.Fatalf("printed token: %v %+v", err, c)
	}
	if !strings.Contains(r.stderr, "shown this once") || strings.Contains(r.stderr, raw) {
		t.Fatalf("stderr %q", r.stderr)
	}
	r = f.run("tokens", "list")
	if r.code != ExitOK || !strings.Contains(r.stdout, c.SessionID) || !strings.Contains(r.stdout, "billing-sync") || strings.Contains(r.stdout, raw) {
		t.Fatalf("list: %+v", r)
	}
	r = f.run("tokens", "revoke", c.SessionID)
	if r.code != ExitOK || !strings.Contains(r.stdout, "Revoked service token") {
		t.Fatalf("revoke: %+v", r)
	}
	f.edge.mu.Lock()
	revoked := f.edge.revoked
	f.edge.mu.Unlock()
	if len(revoked) != 1 || revoked[0] != c.SessionID {
		t.Fatalf("edge revocations %v", revoked)
	}
	if r := f.run("tokens", "revoke", c.SessionID); r.code != ExitError || !strings.Contains(r.stderr, "404") {
		t.Fatalf("second revoke: %+v", r)
	}
	// Usage errors.
	for _, args := range [][]string{
		{"tokens", "create", "x"},
		{"tokens", "create", "x", "--audiences=a", "--expiresIn=soon"},
		{"sessions", "list", "--audiences=a"},
		{"tokens", "create"},
	} {
		if r := f.run(args...); r.code != ExitUsage {
			t.Errorf("%v: exit %d, want usage: %s", args, r.code, r.stderr)
		}
	}
	if r := f.run("tokens", "create", "--help"); r.code != ExitOK || !strings.Contains(r.stdout, "--audiences") {
		t.Fatalf("help: %+v", r)
	}
}

// TestTokensAreRecordedAsServiceTokenEvents: `tokens create` and `tokens
// revoke` land in the audit trail as service_token_created and
// service_token_revoked (source cli, with the reason), never with the
// token, and `events --kind` finds them.
func TestTokensAreRecordedAsServiceTokenEvents(t *testing.T) {
	f, audit := newAuditFixture(t)
	m := servicetokentest.NewSigner("kidB").Manager(t, f.store, f.edge, f.keys.Horizon, func() time.Time { return t0 })
	h, err := admin.New(admin.Options{Token: token, Store: f.store, Edge: f.edge, Keys: f.keys, Edges: edges{}, ServiceTokens: m,
		Audit: audit, Events: audit})
	if err != nil {
		t.Fatal(err)
	}
	f.srv.Config.Handler = h

	r := f.run("tokens", "create", "billing-sync", "--audiences=billing", "--groups=billing", "--expiresIn=2h", "--reason=nightly sync")
	if r.code != ExitOK {
		t.Fatalf("create: exit %d: %s", r.code, r.stderr)
	}
	raw := strings.TrimSpace(r.stdout)
	var id string
	for _, s := range f.store.All() {
		if s.Username == "billing-sync" {
			id = s.ID
		}
	}
	if r := f.run("tokens", "revoke", id, "--reason=rotated"); r.code != ExitOK {
		t.Fatalf("revoke: exit %d: %s", r.code, r.stderr)
	}
	ev := audit.All()
	if len(ev) != 2 {
		t.Fatalf("events %+v", ev)
	}
	for i, want := range []struct{ kind, reason string }{{events.KindServiceTokenCreated, "nightly sync"}, {events.KindServiceTokenRevoked, "rotated"}} {
		e := ev[i]
		if e.Kind != want.kind || e.Source != events.SourceCLI || e.Actor != admin.LegacyTokenName || e.Reason != want.reason ||
			e.User != "billing-sync" || !strings.Contains(e.Detail, "audiences: billing") || strings.Contains(e.Detail, raw) {
			t.Errorf("event %d: %+v", i, e)
		}
	}
	for _, kind := range []string{events.KindServiceTokenCreated, events.KindServiceTokenRevoked} {
		r := f.run("events", "--kind="+kind)
		if r.code != ExitOK || !strings.Contains(r.stdout, kind) || !strings.Contains(r.stdout, "billing-sync") || strings.Contains(r.stdout, raw) {
			t.Errorf("events --kind=%s: %d\n%s%s", kind, r.code, r.stdout, r.stderr)
		}
	}
}

// TestEventsHelpNamesEveryKindAndSource: the --kind and --source lists in
// `edgepass events --help` are the daemon's.
func TestEventsHelpNamesEveryKindAndSource(t *testing.T) {
	r := run(nil, "events", "--help")
	help := strings.Join(strings.Fields(r.stdout), " ")
	for _, v := range append(append([]string{}, events.Kinds...), events.Sources...) {
		if !strings.Contains(help, " "+v+",") && !strings.Contains(help, " "+v+";") && !strings.Contains(help, " "+v+".") {
			t.Errorf("events --help does not name %q:\n%s", v, r.stdout)
		}
	}
}
