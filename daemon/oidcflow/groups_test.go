package oidcflow

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/edgepass/edgepass/daemon/edgepub"
	"github.com/edgepass/edgepass/daemon/internal/natstest"
	"github.com/edgepass/edgepass/daemon/internal/sessiontest"
	keyring "github.com/edgepass/edgepass/daemon/keys"
	"github.com/edgepass/edgepass/plugin/edgestate"
	"github.com/edgepass/edgepass/plugin/token"
)

// teamGroups returns n realistic group names ("team-platform-12", …).
func teamGroups(prefix string, n int) []string {
	areas := []string{"platform", "payments", "search", "mobile", "data", "security", "infra", "growth"}
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%s-%d", prefix, areas[i%len(areas)], i)
	}
	return out
}

func anyList(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

// edgeStack is what a daemon publishes with and what an edge sees: a real
// key ring (signer, trust anchor) and a real publisher on one NATS server.
type edgeStack struct {
	srv  *natstest.Server
	ring *keyring.Ring
	pub  *edgepub.Publisher
}

func newEdgeStack(t *testing.T) *edgeStack {
	t.Helper()
	srv := natstest.Start(t)
	ring := openRing(t, srv)
	pub, err := edgepub.OpenPublisher(natstest.Context(t), srv.JS, edgepub.Options{Bucket: "edge", Lifetime: 2 * time.Hour, Anchor: ring.AnchorSigningKey()})
	if err != nil {
		t.Fatal(err)
	}
	return &edgeStack{srv: srv, ring: ring, pub: pub}
}

// options wires a handler to the stack as serve does.
func (s *edgeStack) options(o *Options) {
	withRing(s.ring)(o)
	o.Edge, o.Groups = s.pub, s.pub
}

// edge returns an edge state fed every fact of the edge bucket, trusting
// the ring's anchor, as a Traefik replica would hold it.
func (s *edgeStack) edge(t *testing.T) *edgestate.State {
	t.Helper()
	ctx := natstest.Context(t)
	kv, err := s.srv.JS.KeyValue(ctx, "edge")
	if err != nil {
		t.Fatal(err)
	}
	st := edgestate.NewWithAnchors(s.ring.AnchorKeys())
	lister, err := kv.ListKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for key := range lister.Keys() {
		e, err := kv.Get(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		if err := st.Apply(key, "", e.Value(), e.Revision(), time.Now()); err != nil {
			t.Fatalf("edge refused fact %s: %v", key, err)
		}
	}
	return st
}

// verified checks a session cookie as an edge does and returns its claims.
func (s *edgeStack) verified(t *testing.T, raw string) *token.Claims {
	t.Helper()
	c, err := (&token.Verifier{Issuer: ringIssuer, Audience: keyring.Audience}).Verify(raw, s.ring.PublicKeys(), time.Now())
	if err != nil {
		t.Fatalf("edge refuses the session token: %v", err)
	}
	return c
}

// groupsAtEdge are the groups an edge gives the token.
func groupsAtEdge(st *edgestate.State, c *token.Claims) []string {
	if g, ok := st.GroupsOverride(token.SubjectKey(c.Subject), c.IssuedAt); ok {
		return g
	}
	return c.Groups
}

// A user in 150 groups got 84 in the token and the rest were dropped with
// a warning, so per-route group checks failed silently. The full list now
// reaches every edge as a signed groups fact published before the token.
func TestThousandGroupsReachTheEdgeThroughAGroupsFact(t *testing.T) {
	s := newEdgeStack(t)
	e := newEnv(t, s.options)
	all := teamGroups("team", edgepub.MaxGroups)
	e.idp.set(func(p *testIdP) { p.idClaims["groups"] = anyList(all) })
	ck := keptCookie(t, e.login(t, browser(t), ""))
	c := s.verified(t, ck.Value)
	if len(c.Groups) >= len(all) {
		t.Fatalf("token carries all %d groups in %d bytes?", len(c.Groups), len(ck.Value))
	}
	if got := groupsAtEdge(s.edge(t), c); !sameSet(got, all) {
		t.Fatalf("edge gives the token %d groups, want all %d", len(got), len(all))
	}
	if st := e.store.All()[0]; len(st.Groups) != len(all) {
		t.Errorf("session keeps %d groups, want %d", len(st.Groups), len(all))
	}
	// A login fact is not an administrator's override: the next login takes the IdP's groups.
	if _, admin, err := s.pub.GroupsOverride(context.Background(), "user-1"); err != nil || admin {
		t.Errorf("login published an admin override (%v, %v)", admin, err)
	}
	// A later login whose groups fit a cookie carries its own.
	e.idp.set(func(p *testIdP) { p.idClaims["groups"] = []any{"staff"} })
	time.Sleep(1100 * time.Millisecond) // a later iat than the fact's at
	c2 := s.verified(t, sessionCookie(e.login(t, browser(t), ""), DefaultCookieName).Value)
	if got := groupsAtEdge(s.edge(t), c2); !slices.Equal(got, []string{"staff"}) {
		t.Errorf("later small login: edge gives %v, want [staff]", got)
	}
}

func TestRefreshRepublishesChangedBigGroups(t *testing.T) {
	s := newEdgeStack(t)
	e := newEnv(t, s.options)
	e.idp.set(func(p *testIdP) { p.idClaims["groups"] = anyList(teamGroups("team", 600)) })
	_, raw := e.loggedIn(t)
	c := s.verified(t, raw)
	changed := teamGroups("squad", 700)
	e.idp.set(func(p *testIdP) { p.refreshClaims = map[string]any{"groups": anyList(changed)} })
	if err := e.h.RefreshOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := groupsAtEdge(s.edge(t), c); !sameSet(got, changed) {
		t.Fatalf("after refresh the edge gives the token %d groups (first %q), want the %d refreshed ones", len(got), got[0], len(changed))
	}
}

// An administrator's override is kept at login (as before); when it does not
// fit a cookie either, the login republishes it as the administrator's, never
// as the IdP's list, so the override stays in force for later logins.
func TestLoginKeepsAnAdminOverrideThatDoesNotFit(t *testing.T) {
	s := newEdgeStack(t)
	e := newEnv(t, s.options)
	adminList := teamGroups("admin-set", 800)
	if err := s.pub.SetAdminGroups(context.Background(), "user-1", adminList); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond) // the login's iat is after the override's at
	_, raw := e.loggedIn(t)
	c := s.verified(t, raw)
	if got := groupsAtEdge(s.edge(t), c); !sameSet(got, adminList) {
		t.Fatalf("edge gives the token %d groups, want the administrator's %d", len(got), len(adminList))
	}
	g, ok, err := s.pub.GroupsOverride(context.Background(), "user-1")
	if err != nil || !ok || !sameSet(g, adminList) {
		t.Fatalf("admin override after the login: %d groups, in force %v, %v; want it kept", len(g), ok, err)
	}
}

// Publishing the groups fact is part of issuing the token: when it fails,
// the login fails instead of handing out a token whose groups are cut.
func TestLoginFailsWhenTheGroupsFactCannotBePublished(t *testing.T) {
	e := newEnv(t, nil)
	e.edge.fail = true
	e.idp.set(func(p *testIdP) { p.idClaims["groups"] = anyList(teamGroups("team", 600)) })
	resp := e.login(t, browser(t), "")
	if resp.StatusCode != http.StatusInternalServerError || sessionCookie(resp, DefaultCookieName) != nil || len(e.store.All()) != 0 {
		t.Fatalf("status %d, %d sessions; want 500 and none", resp.StatusCode, len(e.store.All()))
	}
	if e.metrics.failure(ReasonGroups) != 1 {
		t.Errorf("groups failure not counted: %v", e.metrics.failures)
	}
}

// oidc.groupsInclude keeps only the groups edges need, at login and at
// refresh, before anything else.
func TestGroupsIncludeFiltersAtLoginAndRefresh(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.GroupsInclude = []string{"team-*", "admins"} })
	e.idp.set(func(p *testIdP) {
		p.idClaims["groups"] = []any{"staff", "admins", "team-a", "everyone", "team-b", "teams"}
	})
	_, raw := e.loggedIn(t)
	fc, err := decodeFake(raw)
	if err != nil || !slices.Equal(fc.Groups, []string{"admins", "team-a", "team-b"}) {
		t.Fatalf("token groups %v (%v), want [admins team-a team-b]", fc.Groups, err)
	}
	e.idp.set(func(p *testIdP) { p.refreshClaims = map[string]any{"groups": []any{"staff", "team-c"}} })
	if err := e.h.RefreshOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := e.edge.groups["user-1"]; !slices.Equal(got, []string{"team-c"}) {
		t.Fatalf("refresh published %v, want [team-c]", got)
	}
}

func TestGroupsIncludePatterns(t *testing.T) {
	cases := []struct {
		include []string
		in      []string
		want    []string
	}{
		{nil, []string{"a", "b"}, []string{"a", "b"}},
		{[]string{"*"}, []string{"a", "b"}, []string{"a", "b"}},
		{[]string{"a"}, []string{"a", "ab", "b"}, []string{"a"}},
		{[]string{"team-*"}, []string{"team-", "team-x", "Team-y", "xteam-z"}, []string{"team-", "team-x"}},
		{[]string{"x", "y*"}, []string{"y", "x", "z"}, []string{"y", "x"}},
	}
	for _, c := range cases {
		inc, err := newGroupFilter(c.include)
		if err != nil {
			t.Fatal(err)
		}
		if got := inc.filter(c.in); !slices.Equal(got, c.want) && !(len(got) == 0 && len(c.want) == 0) {
			t.Errorf("include %q on %q = %q, want %q", c.include, c.in, got, c.want)
		}
	}
	for _, bad := range []string{"", "a*b", "**", " x"} {
		if _, err := newGroupFilter([]string{bad}); err == nil || !strings.Contains(err.Error(), "oidc.groupsInclude") {
			t.Errorf("pattern %q: err %v, want one naming oidc.groupsInclude", bad, err)
		}
	}
	// A required group the filter would drop could never be met.
	_, err := New(Options{PublicURL: "https://auth.example.com", Issuer: "https://idp.example.com", ClientID: "c",
		Store: sessiontest.New(), Signer: fakeSigner{}, Tokens: fakeSigner{}, Edge: newFakeEdge(),
		GroupsInclude: []string{"team-*"}, RequiredGroups: []string{"wiki-users"}})
	if err == nil || !strings.Contains(err.Error(), "oidc.requiredGroups") {
		t.Errorf("required group outside groupsInclude: %v", err)
	}
}
