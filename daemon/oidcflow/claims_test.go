package oidcflow

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/edgepass/edgepass/daemon/admin"
	"github.com/edgepass/edgepass/daemon/edgepub"
	"github.com/edgepass/edgepass/daemon/internal/natstest"
	"github.com/edgepass/edgepass/daemon/internal/sessiontest"
)

// manyGroups returns n distinct group names of about size bytes each.
func manyGroups(prefix string, n, size int) []any {
	out := make([]any, n)
	for i := range out {
		name := fmt.Sprintf("%s-%04d-", prefix, i)
		out[i] = name + strings.Repeat("x", max(0, size-len(name)))
	}
	return out
}

// A user in more groups than an edge fact can carry still signs in and is
// refreshed: the IdP's list is cut to edgepub's limits (count and bytes)
// before it is stored or published, so the real publisher never refuses it.
func TestGroupsOverTheLimitAreCappedAtLoginAndRefresh(t *testing.T) {
	cases := map[string]struct {
		size  int // bytes per group name
		n     int // groups the IdP reports
		want  int // groups kept
		limit string
	}{
		"more groups than MaxGroups":    {size: 12, n: edgepub.MaxGroups + 24, want: edgepub.MaxGroups, limit: "count"},
		"more bytes than MaxGroupBytes": {size: 200, n: 400, want: edgepub.MaxGroupBytes / 200, limit: "bytes"},
	}
	srv := natstest.Start(t)
	_, anchor, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := edgepub.OpenPublisher(natstest.Context(t), srv.JS, edgepub.Options{Bucket: "edge", Lifetime: 2 * time.Hour, Anchor: anchor})
	if err != nil {
		t.Fatal(err)
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			var logs bytes.Buffer
			m := admin.NewMetrics(nil)
			e := newEnv(t, func(o *Options) {
				o.Edge, o.Metrics, o.Logger = pub, m, slog.New(slog.NewTextHandler(&logs, nil))
			})
			e.idp.set(func(p *testIdP) { p.idClaims["groups"] = manyGroups("login", c.n, c.size) })
			e.loggedIn(t)
			s := e.store.All()[0]
			if len(s.Groups) != c.want {
				t.Fatalf("login stored %d groups, want %d", len(s.Groups), c.want)
			}
			// Capped, but not silently: a warning and a metric.
			if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "groups over edgepass's limits") ||
				!strings.Contains(logs.String(), fmt.Sprintf("dropped=%d", c.n-c.want)) {
				t.Errorf("no warning naming the dropped groups: %s", logs.String())
			}
			if want := fmt.Sprintf(`edgepass_groups_capped_total{limit=%q} 1`, c.limit); !strings.Contains(scrape(m), want) {
				t.Errorf("metrics lack %s", want)
			}
			// Changed groups at refresh are published to the real edge bucket.
			e.idp.set(func(p *testIdP) { p.refreshClaims = map[string]any{"groups": manyGroups("refresh", c.n, c.size)} })
			if err := e.h.RefreshOnce(context.Background()); err != nil {
				t.Fatalf("refresh of a user with %d groups: %v", c.n, err)
			}
			s = e.store.All()[0]
			if len(s.Groups) != c.want || !strings.HasPrefix(s.Groups[0], "refresh-") {
				t.Fatalf("refresh stored %d groups (first %q), want %d refreshed ones", len(s.Groups), s.Groups[0], c.want)
			}
			if got := e.edge.revokedSIDs(); len(got) != 0 {
				t.Fatalf("session revoked: %v", got)
			}
			if want := fmt.Sprintf(`edgepass_groups_capped_total{limit=%q} 2`, c.limit); !strings.Contains(scrape(m), want) {
				t.Errorf("refresh: metrics lack %s", want)
			}
		})
	}
}

// scrape returns the registry's metrics in the Prometheus text format.
func scrape(m *admin.Metrics) string {
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	return rec.Body.String()
}

// Group names over MaxGroupName are dropped, not silently either.
func TestOverlongGroupNamesAreDroppedWithAWarning(t *testing.T) {
	e := newEnv(t, nil)
	long := strings.Repeat("g", edgepub.MaxGroupName+1)
	e.idp.set(func(p *testIdP) { p.idClaims["groups"] = []any{"staff", long} })
	e.loggedIn(t)
	if s := e.store.All()[0]; len(s.Groups) != 1 || s.Groups[0] != "staff" {
		t.Fatalf("groups %v, want [staff]", s.Groups)
	}
	if e.metrics.capped["name"] != 1 {
		t.Errorf("capped metric %v, want name=1", e.metrics.capped)
	}
}

// mappingHandler is a Handler for claim-mapping tests (no IdP is
// contacted); logs go to the returned buffer.
func mappingHandler(t *testing.T, mod func(o *Options)) (*Handler, *bytes.Buffer) {
	t.Helper()
	var logs bytes.Buffer
	h, _ := newFakes().handler(t, Options{PublicURL: "https://auth.example.com", Issuer: "https://idp.example.com", ClientID: "edgepass",
		Logger: slog.New(slog.NewTextHandler(&logs, nil))}, mod)
	return h, &logs
}

// claimsJSON decodes a JSON object of claims ("" is no claim set).
func claimsJSON(t *testing.T, js string) claimSet {
	t.Helper()
	if js == "" {
		return nil
	}
	var c claimSet
	if err := json.Unmarshal([]byte(js), &c); err != nil {
		t.Fatalf("claims %s: %v", js, err)
	}
	return c
}

// The mapping: user claims in order (the ID token's value of a claim
// before userinfo's, a verified email only, the sub last), groups from
// every path merged in path order without duplicates, then groupsInclude.
func TestClaimMapping(t *testing.T) {
	cases := []struct {
		name       string
		opts       func(o *Options)
		id, ui     string
		wantUser   string
		wantGroups []string // nil: no groups claim found
	}{
		{
			name:       "defaults",
			id:         `{"preferred_username": "alice", "email": "a@example.com", "groups": ["staff"]}`,
			wantUser:   "alice",
			wantGroups: []string{"staff"},
		},
		{
			name:       "no preferred_username: the email",
			id:         `{"email": "a@example.com", "groups": "staff"}`,
			wantUser:   "a@example.com",
			wantGroups: []string{"staff"},
		},
		{
			name:     "an unverified email is never the user name: the sub",
			id:       `{"email": "a@example.com", "email_verified": false}`,
			wantUser: "user-1",
		},
		{
			name:     "email_verified false in userinfo also disqualifies the ID token's email",
			id:       `{"email": "a@example.com"}`,
			ui:       `{"email_verified": "false"}`,
			wantUser: "user-1",
		},
		{
			name:     "the order is the claims' order, whichever claim set carries them",
			opts:     func(o *Options) { o.UserClaims = []string{"upn", "preferred_username"} },
			id:       `{"preferred_username": "alice"}`,
			ui:       `{"upn": "alice@corp.example.com"}`,
			wantUser: "alice@corp.example.com",
		},
		{
			name:     "the ID token's value of a claim wins over userinfo's",
			id:       `{"preferred_username": "from-id-token"}`,
			ui:       `{"preferred_username": "from-userinfo"}`,
			wantUser: "from-id-token",
		},
		{
			name:     "none of the claims: the sub",
			opts:     func(o *Options) { o.UserClaims = []string{"nickname"} },
			id:       `{"preferred_username": "alice", "email": "a@example.com"}`,
			wantUser: "user-1",
		},
		{
			name:     "non-strings and over-long strings are skipped",
			opts:     func(o *Options) { o.UserClaims = []string{"a", "b", "c"} },
			id:       `{"a": 7, "b": "` + strings.Repeat("x", maxClaimLen+1) + `", "c": "carol"}`,
			wantUser: "carol",
		},
		{
			name:     "nested user claim",
			opts:     func(o *Options) { o.UserClaims = []string{`profile["login.name"]`, "sub"} },
			id:       `{"profile": {"login.name": "alice"}}`,
			wantUser: "alice",
		},
		{
			name: "several paths: union in path order, duplicates dropped",
			opts: func(o *Options) {
				o.GroupsClaims = []string{"realm_access.roles", `resource_access["edgepass"].roles`, "groups"}
			},
			id:         `{"preferred_username": "alice", "realm_access": {"roles": ["b", "a"]}, "resource_access": {"edgepass": {"roles": ["a", "c"]}, "other": {"roles": ["x"]}}, "groups": ["d", "b"]}`,
			wantUser:   "alice",
			wantGroups: []string{"b", "a", "c", "d"},
		},
		{
			name:       "each path read from the ID token, else from userinfo",
			opts:       func(o *Options) { o.GroupsClaims = []string{"groups", "roles"} },
			id:         `{"preferred_username": "alice", "groups": ["g1"]}`,
			ui:         `{"groups": ["ignored"], "roles": ["r1", "g1"]}`,
			wantUser:   "alice",
			wantGroups: []string{"g1", "r1"},
		},
		{
			name:       "an object's keys, sorted",
			opts:       func(o *Options) { o.GroupsClaims = []string{`["urn:zitadel:iam:org:project:roles"].keys()`} },
			id:         `{"preferred_username": "alice", "urn:zitadel:iam:org:project:roles": {"viewer": {"1": "a"}, "admin": {"1": "a"}}}`,
			wantUser:   "alice",
			wantGroups: []string{"admin", "viewer"},
		},
		{
			name:       "an empty object's keys: present, no groups",
			opts:       func(o *Options) { o.GroupsClaims = []string{`roles.keys()`} },
			id:         `{"preferred_username": "alice", "roles": {}}`,
			wantUser:   "alice",
			wantGroups: []string{},
		},
		{
			name:       "the mapping first, then groupsInclude",
			opts:       func(o *Options) { o.GroupsClaims = []string{"a", "b"}; o.GroupsInclude = []string{"team-*"} },
			id:         `{"preferred_username": "alice", "a": ["team-x", "other"], "b": ["team-y", "team-x"]}`,
			wantUser:   "alice",
			wantGroups: []string{"team-x", "team-y"},
		},
		{
			name:       "the older single GroupsClaim and UsernameClaim still work",
			opts:       func(o *Options) { o.GroupsClaim = "realm_access.roles"; o.UsernameClaim = "upn" },
			id:         `{"preferred_username": "alice", "upn": "alice@corp", "realm_access": {"roles": ["r"]}}`,
			wantUser:   "alice@corp",
			wantGroups: []string{"r"},
		},
		{
			name:       "UsernameClaim keeps its old fallback: email, then sub",
			opts:       func(o *Options) { o.UsernameClaim = "upn" },
			id:         `{"preferred_username": "alice", "email": "a@example.com", "groups": []}`,
			wantUser:   "a@example.com",
			wantGroups: []string{},
		},
		{
			name:       "a dotted name is first a literal claim name (as before)",
			opts:       func(o *Options) { o.GroupsClaims = []string{"https://example.com/groups"} },
			id:         `{"preferred_username": "alice", "https://example.com/groups": ["ns"]}`,
			wantUser:   "alice",
			wantGroups: []string{"ns"},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h, _ := mappingHandler(t, c.opts)
			id := h.mapClaims("user-1", claimsJSON(t, c.id), claimsJSON(t, c.ui))
			if id.Username != c.wantUser {
				t.Errorf("user %q, want %q", id.Username, c.wantUser)
			}
			if (c.wantGroups == nil) != !id.hasGroups || !slices.Equal(id.Groups, c.wantGroups) {
				t.Errorf("groups %q (found %v), want %q", id.Groups, id.hasGroups, c.wantGroups)
			}
		})
	}
}

// A groups path pointing at something that is not groups is ignored, and
// said once in the log with the fix (usually a .keys() suffix).
func TestClaimMappingWarnsAboutUnusableShapes(t *testing.T) {
	cases := []struct {
		path, claims, want string
	}{
		{`["urn:zitadel:iam:org:project:roles"]`, `{"urn:zitadel:iam:org:project:roles": {"admin": {}}}`, `to take its keys as the groups, write [\"urn:zitadel:iam:org:project:roles\"].keys()`},
		{"groups.keys()", `{"groups": ["a"]}`, "keys() needs a JSON object"},
		{"groups", `{"groups": 42}`, "give a path to a list of strings or a string"},
	}
	for _, c := range cases {
		h, logs := mappingHandler(t, func(o *Options) { o.GroupsClaims = []string{c.path} })
		for range 2 {
			if id := h.mapClaims("user-1", claimsJSON(t, c.claims), nil); id.hasGroups || len(id.Groups) != 0 {
				t.Errorf("%s: groups %q, want none", c.path, id.Groups)
			}
		}
		if n := strings.Count(logs.String(), "oidc.groupsClaim path has no usable groups"); n != 1 || !strings.Contains(logs.String(), c.want) {
			t.Errorf("%s: %d warnings, want 1 containing %q:\n%s", c.path, n, c.want, logs)
		}
	}
}

// Malformed paths are refused when the handler is built, naming the setting.
func TestClaimMappingOptionErrors(t *testing.T) {
	cases := []struct {
		mod  func(o *Options)
		want string
	}{
		{func(o *Options) { o.GroupsClaims = []string{"resource_access[edgepass].roles"} }, `oidc.groupsClaim: claim path "resource_access[edgepass].roles": at character 16: a bracketed key must be quoted`},
		{func(o *Options) { o.GroupsClaim = "a..b" }, `oidc.groupsClaim: claim path "a..b": at character 3: empty name between two dots`},
		{func(o *Options) { o.UserClaims = []string{"roles.keys()"} }, `oidc.userClaims "roles.keys()": .keys() yields a list`},
		{func(o *Options) { o.UserClaims = []string{""} }, `oidc.userClaims: claim path "": empty`},
	}
	for _, c := range cases {
		o := Options{PublicURL: "https://auth.example.com", Issuer: "https://idp.example.com", ClientID: "edgepass",
			Store: sessiontest.New(), Signer: fakeSigner{}, Tokens: fakeSigner{}, Edge: newFakeEdge()}
		c.mod(&o)
		if _, err := New(o); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("err %v, want %q", err, c.want)
		}
	}
}
