package servicetoken

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/edgepass/edgepass/daemon/internal/sessiontest"
	"github.com/edgepass/edgepass/daemon/session"
	"github.com/edgepass/edgepass/plugin/policy"
	"github.com/edgepass/edgepass/plugin/token"
)

const issuer = "https://auth.example.com"

type signer struct{ priv ed25519.PrivateKey }

func (s signer) SignClaims(c *token.Claims) (string, string, error) {
	raw, err := token.Sign(c, "k1", s.priv)
	return raw, "k1", err
}

type edge struct{ revoked map[string]time.Time }

func (e *edge) RevokeSession(_ context.Context, sid string, exp time.Time) error {
	e.revoked[sid] = exp
	return nil
}

type fixture struct {
	m     *Manager
	store *sessiontest.Store
	edge  *edge
	keys  *token.KeySet
	now   time.Time
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	f := &fixture{store: sessiontest.New(), edge: &edge{revoked: map[string]time.Time{}}, now: time.Unix(1_700_000_000, 0),
		keys: token.NewKeySet(token.Key{ID: "k1", Public: priv.Public().(ed25519.PublicKey)})}
	var err error
	f.m, err = New(Options{Issuer: issuer, Signer: signer{priv}, Store: f.store, MaxLifetime: func() time.Duration { return 12 * time.Hour },
		Revoker: session.Revoker{Edge: f.edge, Store: f.store}, Now: func() time.Time { return f.now }})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestCreateIssuesAScopedServiceToken(t *testing.T) {
	f := newFixture(t)
	c, err := f.m.Create(context.Background(), CreateRequest{Name: "billing-sync", Groups: []string{"billing", "billing", " ops "}, Audiences: []string{"billing,reports"}, ExpiresIn: "2h"})
	if err != nil {
		t.Fatal(err)
	}
	// What an edge sees: the service audience, never the session one.
	if _, err := (&token.Verifier{Issuer: issuer, Audience: policy.DefaultAudience}).Verify(c.Token, f.keys, f.now); !errors.Is(err, token.ErrAudience) {
		t.Fatalf("a service token verified as a session: %v", err)
	}
	claims, err := (&token.Verifier{Issuer: issuer, Audience: token.ServiceAudience}).Verify(c.Token, f.keys, f.now)
	if err != nil {
		t.Fatal(err)
	}
	if claims.Subject != "service:billing-sync" || claims.PreferredUsername != "billing-sync" || claims.SessionID != c.ID ||
		strings.Join(claims.Groups, ",") != "billing,ops" || strings.Join(claims.ServiceAudiences, ",") != "billing,reports" ||
		claims.Expiry-claims.IssuedAt != 7200 {
		t.Fatalf("claims %+v", claims)
	}
	// Listed with the sessions, without the token.
	all, _ := f.store.List(context.Background(), "")
	if len(all) != 1 || all[0].Kind != session.KindService || all[0].KeyID != "k1" {
		t.Fatalf("stored %+v", all)
	}
	list, err := f.m.List(context.Background())
	if err != nil || len(list) != 1 || list[0].ID != c.ID || strings.Join(list[0].Audiences, ",") != "billing,reports" {
		t.Fatalf("List: %v %+v", err, list)
	}
}

// A revoked service token must be refused at the edges: Revoke publishes a
// session revocation until the token's own exp, and forgets the record.
func TestRevokePublishesASessionRevocation(t *testing.T) {
	f := newFixture(t)
	c, err := f.m.Create(context.Background(), CreateRequest{Name: "ci", Audiences: []string{"deploy"}})
	if err != nil {
		t.Fatal(err)
	}
	if c.ExpiresAt.Sub(c.IssuedAt) != 12*time.Hour {
		t.Fatalf("default lifetime %s, want the maximum", c.ExpiresAt.Sub(c.IssuedAt))
	}
	s, err := f.m.Revoke(context.Background(), c.ID, "admin_session")
	if err != nil || s.ID != c.ID {
		t.Fatalf("Revoke: %v %+v", err, s)
	}
	if exp, ok := f.edge.revoked[c.ID]; !ok || !exp.Equal(c.ExpiresAt) {
		t.Fatalf("edge revocation %v %v", ok, exp)
	}
	if f.store.Has(c.ID) {
		t.Fatal("record kept")
	}
	if _, err := f.m.Revoke(context.Background(), c.ID, "admin_session"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second revoke: %v", err)
	}
	// A browser session is not a service token.
	sid := session.NewID()
	_ = f.store.Put(context.Background(), &session.Session{ID: sid, Subject: "alice", ExpiresAt: f.now.Add(time.Hour)})
	if _, err := f.m.Revoke(context.Background(), sid, "admin_session"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("revoking a browser session as a service token: %v", err)
	}
}

// Attack: mint a long-lived machine token (edges refuse tokens longer than
// the published lifetime; the daemon refuses to make one), or one whose
// scope names the session audience (it would pass as a session).
func TestCreateRefusesLongLivedAndSessionScopedTokens(t *testing.T) {
	f := newFixture(t)
	for _, tc := range []struct {
		req  CreateRequest
		want string
	}{
		{CreateRequest{Name: "x", Audiences: []string{"a"}, ExpiresIn: "13h"}, "at most 12h"},
		{CreateRequest{Name: "x", Audiences: []string{"a"}, ExpiresIn: "10s"}, "at least 1m"},
		{CreateRequest{Name: "x", Audiences: []string{"a"}, ExpiresIn: "soon"}, "not a duration"},
		{CreateRequest{Name: "x", Audiences: []string{"edgepass"}}, "cannot name a route"},
		{CreateRequest{Name: "x", Audiences: []string{"edgepass-service"}}, "cannot name a route"},
		{CreateRequest{Name: "x"}, "at least one route audience"},
		{CreateRequest{Name: "a b", Audiences: []string{"a"}}, "letters, digits"},
		{CreateRequest{Name: "", Audiences: []string{"a"}}, "letters, digits"},
		{CreateRequest{Name: "x", Audiences: []string{"a"}, Groups: []string{"bad\ngroup"}}, "control characters"},
		{CreateRequest{Name: "x", Audiences: []string{"a"}, Groups: many(MaxGroups + 1)}, "at most"},
		{CreateRequest{Name: "x", Audiences: []string{"a"}, Groups: long(40, 200)}, "larger than"},
	} {
		_, err := f.m.Create(context.Background(), tc.req)
		var ie *InputError
		if !errors.As(err, &ie) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want an input error with %q", tc.req, err, tc.want)
		}
	}
	if n := f.store.Len(); n != 0 {
		t.Fatalf("%d records stored for refused requests", n)
	}
}

func many(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = "g" + strings.Repeat("x", i%5) + string(rune('a'+i%26)) + string(rune('a'+i/26))
	}
	return out
}

func long(n, size int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = strings.Repeat(string(rune('a'+i%26)), size-1) + string(rune('a'+i/26))
	}
	return out
}
