package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgepass/edgepass/daemon/edgepub"
	"github.com/edgepass/edgepass/daemon/internal/poll"
	"github.com/edgepass/edgepass/daemon/internal/sessiontest"
	"github.com/edgepass/edgepass/daemon/keys"
	"github.com/edgepass/edgepass/daemon/oidcflow"
	"github.com/edgepass/edgepass/daemon/session"
)

// The core hands the same *Metrics to oidcflow, and the oidcflow handler
// is the IdP readiness check.
var (
	_ oidcflow.Metrics = (*Metrics)(nil)
	_ Pinger           = (*oidcflow.Handler)(nil)
)

const testToken = "admin-token-0123456789abcdef"

type call struct {
	op, key string
	t       time.Time
	groups  []string
}

type fakeEdge struct {
	mu    sync.Mutex
	calls []call
	fail  bool
}

func (e *fakeEdge) record(c call) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.fail {
		return errors.New("nats: secret detail 42")
	}
	e.calls = append(e.calls, c)
	return nil
}

func (e *fakeEdge) RevokeSession(_ context.Context, sid string, exp time.Time) error {
	return e.record(call{op: "session", key: sid, t: exp})
}
func (e *fakeEdge) RevokeUser(_ context.Context, sub string, before time.Time) error {
	return e.record(call{op: "user", key: sub, t: before})
}
func (e *fakeEdge) SetGroups(_ context.Context, sub string, groups []string) error {
	return e.record(call{op: "groups", key: sub, groups: groups})
}

// clearingEdge also lifts group overrides.
type clearingEdge struct{ *fakeEdge }

func (e clearingEdge) ClearGroups(_ context.Context, sub string) error {
	return e.record(call{op: "clear", key: sub})
}

type fakeKeys struct {
	n       int
	fail    bool
	revoked []string
}

func (k *fakeKeys) Rotate(context.Context) (string, error) {
	if k.fail {
		return "", errors.New("keys: secret detail 42")
	}
	k.n++
	return "kid-" + string(rune('0'+k.n)), nil
}

func (k *fakeKeys) Revoke(_ context.Context, kid string) (keys.RevokeResult, error) {
	if k.fail {
		return keys.RevokeResult{}, errors.New("keys: secret detail 42")
	}
	if kid != "kidA" && kid != "kidB" {
		return keys.RevokeResult{}, keys.ErrUnknownKey
	}
	k.revoked = append(k.revoked, kid)
	return keys.RevokeResult{KeyID: kid, WasActive: kid == "kidB", SigningKeyID: "kidC"}, nil
}

func (k *fakeKeys) Keys() []keys.KeyInfo {
	return []keys.KeyInfo{{ID: "kidA", State: "retired", Created: t0}, {ID: "kidB", State: "active", Created: t0}}
}
func (k *fakeKeys) KeyID() string          { return "kidB" }
func (k *fakeKeys) Anchor() string         { return "anchor-public-key" }
func (k *fakeKeys) AnchorID() string       { return "anchor-id" }
func (k *fakeKeys) Horizon() time.Duration { return 12 * time.Hour }

type fakeEdges []EdgeStatus

func edge(replica string, synced bool, seq uint64) EdgeStatus {
	return EdgeStatus{Heartbeat: edgepub.Heartbeat{Replica: replica, Synced: synced, Seq: seq}}
}

// List sorts by replica id, as EdgeLister promises (and edgepub.Heartbeats does).
func (f fakeEdges) List() []EdgeStatus {
	out := slices.Clone([]EdgeStatus(f))
	slices.SortFunc(out, func(a, b EdgeStatus) int { return strings.Compare(a.Replica, b.Replica) })
	return out
}

type pinger func(context.Context) error

func (p pinger) Ping(ctx context.Context) error { return p(ctx) }

type fixture struct {
	h     *Handler
	srv   *httptest.Server
	store *sessiontest.Store
	edge  *fakeEdge
	keys  *fakeKeys
	// jetstream and idp are the readiness probes' answers; discovered is
	// the IdP check's Once.
	mu         sync.Mutex
	jetstream  func(context.Context) error
	idp        func(context.Context) error
	discovered bool
	probes     int
}

// checks are the readiness checks serve configures, backed by f's fields.
func (f *fixture) checks() []Check {
	probe := func(get func() func(context.Context) error) Pinger {
		return pinger(func(ctx context.Context) error {
			f.mu.Lock()
			f.probes++
			p := get()
			f.mu.Unlock()
			if p == nil {
				return nil
			}
			return p(ctx)
		})
	}
	return []Check{
		{Name: CheckJetStream, Probe: probe(func() func(context.Context) error { return f.jetstream }), Down: "cannot write to JetStream"},
		{Name: CheckIdP, Probe: probe(func() func(context.Context) error { return f.idp }),
			Once: func() bool { f.mu.Lock(); defer f.mu.Unlock(); return f.discovered },
			Down: "the IdP does not answer", Pending: "IdP discovery has not succeeded yet"},
	}
}

// set changes the fixture's probe answers and forgets cached results.
func (f *fixture) set(mod func(f *fixture)) {
	f.mu.Lock()
	mod(f)
	f.mu.Unlock()
	f.h.readyMu.Lock()
	f.h.readiness = nil
	f.h.readyMu.Unlock()
}

var t0 = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{
		store: sessiontest.New(
			session.Session{ID: "sid-a1", Subject: "alice", Username: "alice", Groups: []string{"staff"}, IssuedAt: t0, ExpiresAt: t0.Add(time.Hour), RefreshToken: "rt-secret", IDToken: "idt-secret"},
			session.Session{ID: "sid-a2", Subject: "alice", Username: "alice", IssuedAt: t0.Add(time.Minute), ExpiresAt: t0.Add(2 * time.Hour), RefreshToken: "rt-secret2"},
			session.Session{ID: "sid-b1", Subject: "bob/x", Username: "bob", IssuedAt: t0.Add(2 * time.Minute), ExpiresAt: t0.Add(3 * time.Hour)},
		),
		edge:       &fakeEdge{},
		keys:       &fakeKeys{},
		discovered: true,
	}
	f.serve(t, Options{
		Token: testToken, Store: f.store, Edge: f.edge, Keys: f.keys,
		Edges:   fakeEdges{edge("traefik-b", true, 9), edge("traefik-a", false, 3)},
		Checks:  f.checks(),
		Metrics: NewMetrics(func() int { return f.store.Len() }),
	})
	return f
}

// serve makes the handler o configures, its clock an hour after t0, the
// fixture's: served at f.srv, which it starts the first time.
func (f *fixture) serve(t *testing.T, o Options) {
	t.Helper()
	h, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	h.now = func() time.Time { return t0.Add(time.Hour) }
	f.h = h
	if f.srv != nil {
		f.srv.Config.Handler = h
		return
	}
	f.srv = httptest.NewServer(h)
	t.Cleanup(f.srv.Close)
}

type reply struct {
	status int
	header http.Header
	body   []byte
}

func (r reply) json(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("body %q: %v", r.body, err)
	}
}

func (r reply) errorMsg(t *testing.T) string {
	t.Helper()
	var e struct {
		Error string `json:"error"`
	}
	r.json(t, &e)
	if e.Error == "" {
		t.Fatalf("error body %q lacks \"error\"", r.body)
	}
	return e.Error
}

func (f *fixture) do(t *testing.T, method, path, token, body string) reply {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, f.srv.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return reply{resp.StatusCode, resp.Header, b}
}

func (f *fixture) api(t *testing.T, method, path, body string) reply {
	return f.do(t, method, path, "Bearer "+testToken, body)
}

// Attack: calling the admin API without the token, with a wrong or
// truncated one, or with another auth scheme.
func TestAPIRejectsMissingOrWrongToken(t *testing.T) {
	f := newFixture(t)
	tokens := []string{"", "Bearer", "Bearer ", "Bearer wrong", "Bearer " + testToken[:len(testToken)-1], "Bearer " + testToken + "x",
		"Basic " + testToken, testToken, "Bearer  " + testToken}
	paths := []struct{ method, path string }{
		{"GET", "/api/v1/sessions"}, {"GET", "/api/v1/sessions/sid-a1"}, {"DELETE", "/api/v1/sessions/sid-a1"},
		{"POST", "/api/v1/users/alice/revoke"}, {"PUT", "/api/v1/users/alice/groups"}, {"POST", "/api/v1/keys/rotate"},
		{"GET", "/api/v1/edges"}, {"GET", "/api/v1/unknown"}, {"PATCH", "/api/v1/sessions"},
	}
	for _, tok := range tokens {
		for _, p := range paths {
			r := f.do(t, p.method, p.path, tok, `{"groups":["x"]}`)
			if r.status != http.StatusUnauthorized || !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer") {
				t.Fatalf("%s %s with %q: status %d, WWW-Authenticate %q; want 401", p.method, p.path, tok, r.status, r.header.Get("WWW-Authenticate"))
			}
			r.errorMsg(t)
		}
	}
	if len(f.edge.calls) != 0 || f.keys.n != 0 || f.store.Len() != 3 {
		t.Fatal("an unauthenticated request changed state")
	}
	if r := f.do(t, "GET", "/api/v1/sessions", "bearer "+testToken, ""); r.status != http.StatusOK {
		t.Fatalf("lower-case scheme: %d", r.status)
	}
}

func TestListSessions(t *testing.T) {
	f := newFixture(t)
	r := f.api(t, "GET", "/api/v1/sessions", "")
	if r.status != http.StatusOK {
		t.Fatalf("status %d", r.status)
	}
	if strings.Contains(string(r.body), "secret") {
		t.Fatalf("session list leaks refresh or ID tokens: %s", r.body)
	}
	var l SessionList
	r.json(t, &l)
	var ids []string
	for _, s := range l.Sessions {
		ids = append(ids, s.ID)
	}
	if !slices.Equal(ids, []string{"sid-a1", "sid-a2", "sid-b1"}) {
		t.Fatalf("sessions %v, want all three oldest first", ids)
	}
	r = f.api(t, "GET", "/api/v1/sessions?user=alice", "")
	r.json(t, &l)
	if len(l.Sessions) != 2 || l.Sessions[0].Subject != "alice" || l.Sessions[1].Subject != "alice" {
		t.Fatalf("filtered list %+v", l.Sessions)
	}
	// An unknown user is refused, not answered with an empty list that
	// reads like "signed out everywhere"; an explicit sub may have none.
	r = f.api(t, "GET", "/api/v1/sessions?user=nobody", "")
	if r.status != http.StatusNotFound {
		t.Fatalf("unknown user: %d %s; want 404", r.status, r.body)
	}
	r = f.api(t, "GET", "/api/v1/sessions?user=sub:nobody", "")
	if r.status != http.StatusOK || !strings.Contains(string(r.body), `"sessions": []`) {
		t.Fatalf("explicit sub without sessions: %d %s; want an empty list", r.status, r.body)
	}
	for _, bad := range []string{"?user=", "?user=%00", "?user=" + strings.Repeat("a", 2000)} {
		if r := f.api(t, "GET", "/api/v1/sessions"+bad, ""); r.status != http.StatusBadRequest {
			t.Errorf("%s: status %d, want 400", bad, r.status)
		}
	}
}

func TestGetSession(t *testing.T) {
	f := newFixture(t)
	r := f.api(t, "GET", "/api/v1/sessions/sid-a1", "")
	var s session.Session
	r.json(t, &s)
	if r.status != http.StatusOK || s.ID != "sid-a1" || s.Subject != "alice" || s.RefreshToken != "" || s.IDToken != "" ||
		strings.Contains(string(r.body), "secret") {
		t.Fatalf("status %d session %s", r.status, r.body)
	}
	for _, id := range []string{"nope", strings.Repeat("x", 300), "%00"} {
		r := f.api(t, "GET", "/api/v1/sessions/"+id, "")
		if r.status != http.StatusNotFound {
			t.Errorf("%q: status %d, want 404", id, r.status)
		}
		r.errorMsg(t)
	}
}

func TestDeleteSession(t *testing.T) {
	f := newFixture(t)
	r := f.api(t, "DELETE", "/api/v1/sessions/sid-a1", "")
	var res RevokeResult
	r.json(t, &res)
	if r.status != http.StatusOK || res.ID != "sid-a1" || res.Revoked != "session" {
		t.Fatalf("status %d %s", r.status, r.body)
	}
	if len(f.edge.calls) != 1 || f.edge.calls[0].op != "session" || f.edge.calls[0].key != "sid-a1" || !f.edge.calls[0].t.Equal(t0.Add(time.Hour)) {
		t.Fatalf("edge calls %+v; want a session revocation until the session's expiry", f.edge.calls)
	}
	if f.store.Has("sid-a1") {
		t.Fatal("session still stored")
	}
	if r := f.api(t, "DELETE", "/api/v1/sessions/sid-a1", ""); r.status != http.StatusNotFound {
		t.Fatalf("second delete: %d, want 404", r.status)
	}
	if len(f.edge.calls) != 1 {
		t.Fatal("unknown session published a revocation")
	}
}

func TestDeleteSessionEdgeFailureKeepsSession(t *testing.T) {
	f := newFixture(t)
	f.edge.fail = true
	r := f.api(t, "DELETE", "/api/v1/sessions/sid-a1", "")
	if r.status != http.StatusInternalServerError || strings.Contains(string(r.body), "secret detail") {
		t.Fatalf("status %d body %s; want a generic 500", r.status, r.body)
	}
	if !f.store.Has("sid-a1") {
		t.Fatal("session deleted although the edge was not told")
	}
}

func TestRevokeUser(t *testing.T) {
	f := newFixture(t)
	r := f.api(t, "POST", "/api/v1/users/alice/revoke", "")
	var res RevokeResult
	r.json(t, &res)
	if r.status != http.StatusOK || res.Subject != "alice" || res.Sessions != 2 {
		t.Fatalf("status %d %s", r.status, r.body)
	}
	if len(f.edge.calls) != 1 || f.edge.calls[0].op != "user" || f.edge.calls[0].key != "alice" || !f.edge.calls[0].t.Equal(t0.Add(time.Hour)) {
		t.Fatalf("edge calls %+v", f.edge.calls)
	}
	if f.store.Len() != 1 {
		t.Fatalf("%d sessions left, want bob's", f.store.Len())
	}
	// A subject with a slash, escaped in the path.
	r = f.api(t, "POST", "/api/v1/users/"+url.PathEscape("bob/x")+"/revoke", "")
	r.json(t, &res)
	if r.status != http.StatusOK || res.Subject != "bob/x" || res.Sessions != 1 {
		t.Fatalf("escaped subject: %d %s", r.status, r.body)
	}
	// A sub without sessions is revoked when named as sub:<sub>: its tokens
	// may outlive the store. A bare unknown name is refused (404).
	if r := f.api(t, "POST", "/api/v1/users/sub:ghost/revoke", ""); r.status != http.StatusOK {
		t.Fatalf("explicit unknown sub: %d", r.status)
	}
	if r := f.api(t, "POST", "/api/v1/users/ghost/revoke", ""); r.status != http.StatusNotFound {
		t.Fatalf("unknown user: %d, want 404", r.status)
	}
	if r := f.api(t, "POST", "/api/v1/users/"+url.PathEscape("a\x01b")+"/revoke", ""); r.status != http.StatusBadRequest {
		t.Fatalf("control character in subject: %d, want 400", r.status)
	}
}

func TestSetGroups(t *testing.T) {
	f := newFixture(t)
	r := f.api(t, "PUT", "/api/v1/users/alice/groups", `{"groups":["admins","staff"]}`)
	if r.status != http.StatusOK {
		t.Fatalf("status %d %s", r.status, r.body)
	}
	if len(f.edge.calls) != 1 || f.edge.calls[0].op != "groups" || !slices.Equal(f.edge.calls[0].groups, []string{"admins", "staff"}) {
		t.Fatalf("edge calls %+v", f.edge.calls)
	}
	if r := f.api(t, "PUT", "/api/v1/users/alice/groups", `{"groups":[]}`); r.status != http.StatusOK {
		t.Fatalf("empty list (remove all groups): %d", r.status)
	}
}

// Attack: malformed, oversized or sneaky bodies must be refused as bad input.
func TestSetGroupsRejectsBadBodies(t *testing.T) {
	f := newFixture(t)
	many := `{"groups":["g0"` + distinctGroups(edgepub.MaxGroups) + `]}`
	manyLong := ""
	for i := range 200 {
		manyLong += fmt.Sprintf(`,"%03d%s"`, i, strings.Repeat("b", 250))
	}
	cases := map[string]struct {
		body string
		want int
	}{
		"empty body":      {"", http.StatusBadRequest},
		"not JSON":        {"groups=a", http.StatusBadRequest},
		"truncated":       {`{"groups":["a"`, http.StatusBadRequest},
		"unknown field":   {`{"groups":["a"],"admin":true}`, http.StatusBadRequest},
		"trailing data":   {`{"groups":["a"]}{"groups":["b"]}`, http.StatusBadRequest},
		"trailing junk":   {`{"groups":["a"]} x`, http.StatusBadRequest},
		"missing groups":  {`{}`, http.StatusBadRequest},
		"null groups":     {`{"groups":null}`, http.StatusBadRequest},
		"groups a string": {`{"groups":"a,b"}`, http.StatusBadRequest},
		"non-string":      {`{"groups":["a",1]}`, http.StatusBadRequest},
		"empty name":      {`{"groups":["a",""]}`, http.StatusBadRequest},
		"control char":    {`{"groups":["a\u0000b"]}`, http.StatusBadRequest},
		"too long":        {`{"groups":["` + strings.Repeat("a", 300) + `"]}`, http.StatusBadRequest},
		"too many":        {many, http.StatusBadRequest},
		// Within the body limit, but a list that big would near the edge's 64 KiB value limit (a 500 from NATS): refused up front.
		"too many bytes": {`{"groups":["a"` + manyLong + `]}`, http.StatusBadRequest},
		"duplicate":      {`{"groups":["a","a"]}`, http.StatusBadRequest},
		"array body":     {`["a"]`, http.StatusBadRequest},
		"huge body":      {`{"groups":["` + strings.Repeat("a", 70<<10) + `"]}`, http.StatusRequestEntityTooLarge},
	}
	for name, c := range cases {
		r := f.api(t, "PUT", "/api/v1/users/alice/groups", c.body)
		if r.status != c.want {
			t.Errorf("%s: status %d, want %d (%s)", name, r.status, c.want, r.body)
			continue
		}
		r.errorMsg(t)
	}
	if len(f.edge.calls) != 0 {
		t.Fatalf("bad input published groups: %+v", f.edge.calls)
	}
}

// distinctGroups returns n JSON array elements ,"g1",…,"gn".
func distinctGroups(n int) string {
	var b strings.Builder
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&b, `,"g%d"`, i)
	}
	return b.String()
}

// The admin API accepts as many groups as the edge publisher does
// (edgepub.MaxGroups), and no more.
func TestSetGroupsAcceptsUpToMaxGroups(t *testing.T) {
	f := newFixture(t)
	r := f.api(t, "PUT", "/api/v1/users/alice/groups", `{"groups":["g0"`+distinctGroups(edgepub.MaxGroups-1)+`]}`)
	if r.status != http.StatusOK {
		t.Fatalf("%d groups: status %d (%s)", edgepub.MaxGroups, r.status, r.body)
	}
	if len(f.edge.calls) != 1 || len(f.edge.calls[0].groups) != edgepub.MaxGroups {
		t.Fatalf("published %+v, want one list of %d groups", f.edge.calls, edgepub.MaxGroups)
	}
	r = f.api(t, "PUT", "/api/v1/users/alice/groups", `{"groups":["g0"`+distinctGroups(edgepub.MaxGroups)+`]}`)
	if r.status != http.StatusBadRequest || !strings.Contains(string(r.body), "too many groups") {
		t.Fatalf("%d groups: status %d (%s), want 400 too many groups", edgepub.MaxGroups+1, r.status, r.body)
	}
}

func TestClearGroups(t *testing.T) {
	f := newFixture(t)
	// Without ClearGroups in the core, DELETE is not offered.
	if r := f.api(t, "DELETE", "/api/v1/users/alice/groups", ""); r.status != http.StatusMethodNotAllowed || r.header.Get("Allow") != "PUT" {
		t.Fatalf("DELETE without a GroupClearer: %d Allow %q", r.status, r.header.Get("Allow"))
	}
	edge := clearingEdge{&fakeEdge{}}
	f.serve(t, Options{Token: testToken, Store: f.store, Edge: edge, Keys: f.keys, Edges: fakeEdges{}})
	if r := f.api(t, "DELETE", "/api/v1/users/"+url.PathEscape("bob/x")+"/groups", ""); r.status != http.StatusOK {
		t.Fatalf("DELETE: %d %s", r.status, r.body)
	}
	if len(edge.calls) != 1 || edge.calls[0].op != "clear" || edge.calls[0].key != "bob/x" {
		t.Fatalf("edge calls %+v", edge.calls)
	}
	if r := f.api(t, "DELETE", "/api/v1/users/%01/groups", ""); r.status != http.StatusBadRequest {
		t.Fatalf("bad subject: %d", r.status)
	}
}

func TestRotateKeys(t *testing.T) {
	f := newFixture(t)
	r := f.api(t, "POST", "/api/v1/keys/rotate", "")
	var res RotateResult
	r.json(t, &res)
	if r.status != http.StatusOK || res.KeyID != "kid-1" || f.keys.n != 1 {
		t.Fatalf("status %d %s", r.status, r.body)
	}
	f.keys.fail = true
	r = f.api(t, "POST", "/api/v1/keys/rotate", "")
	if r.status != http.StatusInternalServerError || strings.Contains(string(r.body), "secret detail") {
		t.Fatalf("failure: %d %s; want a generic 500", r.status, r.body)
	}
}

func TestListKeys(t *testing.T) {
	f := newFixture(t)
	r := f.api(t, "GET", "/api/v1/keys", "")
	var l KeyList
	r.json(t, &l)
	if r.status != http.StatusOK || l.Anchor != "anchor-public-key" || l.AnchorID != "anchor-id" || l.SigningKeyID != "kidB" ||
		l.MaxTokenLifetime != 12*3600 || len(l.Keys) != 2 || l.Keys[1].State != "active" {
		t.Fatalf("status %d %s", r.status, r.body)
	}
	if r := f.api(t, "POST", "/api/v1/keys", ""); r.status != http.StatusMethodNotAllowed {
		t.Errorf("POST /api/v1/keys: %d", r.status)
	}
}

func TestRevokedKeyEndsTheSessionsItSigned(t *testing.T) {
	// Attack: a leaked signing key; the sessions whose tokens it signed must end too, so refresh stops re-checking them and their cookies die everywhere.
	f := newFixture(t)
	signedBy := map[string]string{"sid-a1": "kidB", "sid-a2": "kidA", "sid-b1": "kidB"}
	for sid, kid := range signedBy {
		s, rev, _ := f.store.Get(context.Background(), sid)
		s.KeyID = kid
		if _, err := f.store.Update(context.Background(), s, rev); err != nil {
			t.Fatal(err)
		}
	}
	r := f.api(t, "POST", "/api/v1/keys/kidB/revoke", "")
	var res KeyRevokeResult
	r.json(t, &res)
	if r.status != http.StatusOK || res.KeyID != "kidB" || !res.WasActive || res.SigningKeyID != "kidC" || res.Sessions != 2 {
		t.Fatalf("status %d %s", r.status, r.body)
	}
	if f.store.Has("sid-a1") || f.store.Has("sid-b1") || !f.store.Has("sid-a2") {
		t.Errorf("sessions left: %v", f.store.All())
	}
	var ended []string
	for _, c := range f.edge.calls {
		if c.op == "session" {
			ended = append(ended, c.key)
		}
	}
	slices.Sort(ended)
	if strings.Join(ended, ",") != "sid-a1,sid-b1" {
		t.Errorf("edge revocations %v, want sid-a1 and sid-b1", ended)
	}

	cases := []struct {
		path   string
		status int
	}{
		{"/api/v1/keys/nope/revoke", http.StatusNotFound},
		{"/api/v1/keys/" + url.PathEscape("a.b") + "/revoke", http.StatusNotFound},
		{"/api/v1/keys/" + strings.Repeat("k", 65) + "/revoke", http.StatusNotFound},
	}
	for _, c := range cases {
		if r := f.api(t, "POST", c.path, ""); r.status != c.status || !strings.Contains(string(r.body), "edgepass keys list") {
			t.Errorf("POST %s: %d %s, want %d", c.path, r.status, r.body, c.status)
		}
	}
	if r := f.api(t, "GET", "/api/v1/keys/kidA/revoke", ""); r.status != http.StatusMethodNotAllowed {
		t.Errorf("GET revoke: %d", r.status)
	}
	f.keys.fail = true
	if r := f.api(t, "POST", "/api/v1/keys/kidA/revoke", ""); r.status != http.StatusInternalServerError || strings.Contains(string(r.body), "secret detail") {
		t.Fatalf("failure: %d %s; want a generic 500", r.status, r.body)
	}
}

func TestEdges(t *testing.T) {
	f := newFixture(t)
	r := f.api(t, "GET", "/api/v1/edges", "")
	var l EdgeList
	r.json(t, &l)
	if r.status != http.StatusOK || len(l.Edges) != 2 || l.Edges[0].Replica != "traefik-a" || !l.Edges[1].Synced {
		t.Fatalf("status %d %s", r.status, r.body)
	}
}

func TestWrongMethod(t *testing.T) {
	f := newFixture(t)
	cases := []struct{ method, path, allow string }{
		{"POST", "/api/v1/sessions", "GET"},
		{"PUT", "/api/v1/sessions/sid-a1", "DELETE, GET"},
		{"GET", "/api/v1/users/alice/revoke", "POST"},
		{"POST", "/api/v1/users/alice/groups", "PUT"},
		{"GET", "/api/v1/keys/rotate", "POST"},
		{"DELETE", "/api/v1/edges", "GET"},
		{"POST", "/healthz", "GET"},
		{"POST", "/readyz", "GET"},
		{"POST", "/metrics", "GET"},
	}
	for _, c := range cases {
		r := f.api(t, c.method, c.path, "")
		if r.status != http.StatusMethodNotAllowed {
			t.Errorf("%s %s: status %d, want 405", c.method, c.path, r.status)
			continue
		}
		allow := strings.Split(r.header.Get("Allow"), ", ")
		slices.Sort(allow)
		if strings.Join(allow, ", ") != c.allow {
			t.Errorf("%s %s: Allow %q, want %q", c.method, c.path, r.header.Get("Allow"), c.allow)
		}
		r.errorMsg(t)
	}
	if len(f.edge.calls) != 0 || f.store.Len() != 3 {
		t.Fatal("a refused method changed state")
	}
}

func TestUnknownPaths(t *testing.T) {
	f := newFixture(t)
	for _, p := range []string{"/nope", "/api/v2/sessions", "/api/v1/users/alice", "/api/v1/sessions/a/b"} {
		r := f.api(t, "GET", p, "")
		if r.status != http.StatusNotFound {
			t.Errorf("%s: status %d, want 404", p, r.status)
			continue
		}
		r.errorMsg(t)
	}
}

func TestHealthzNeedsNoToken(t *testing.T) {
	f := newFixture(t)
	f.set(func(f *fixture) { f.jetstream = func(context.Context) error { return errors.New("down") } })
	if r := f.do(t, "GET", "/healthz", "", ""); r.status != http.StatusOK {
		t.Fatalf("healthz: %d", r.status)
	}
}

func (f *fixture) readyz(t *testing.T) (int, Readiness) {
	t.Helper()
	r := f.do(t, "GET", "/readyz", "", "")
	var res Readiness
	r.json(t, &res)
	if strings.Contains(string(r.body), "secret detail") {
		t.Errorf("/readyz leaks a probe's error: %s", r.body)
	}
	return r.status, res
}

// Misleading health: /readyz was 503 without a reason while the IdP was down
// at start, said the IdP was fine forever after one success, and said ready
// while JetStream could not be written. Ready means "can issue and revoke":
// JetStream writable now, IdP discovered once; the body says each check's
// state now and why.
func TestReadyz(t *testing.T) {
	secret := func(context.Context) error { return errors.New("secret detail 42") }
	cases := []struct {
		name            string
		jetstream, idp  func(context.Context) error
		discovered      bool
		code            int
		jsState, idpSt  string
		idpReady        bool
		reasonSubstring string
	}{
		{"all up", nil, nil, true, 200, "ok", "ok", true, ""},
		{"IdP down at start", nil, secret, false, 503, "ok", "failing", false, "discovery has not succeeded"},
		{"IdP up once, then down", nil, secret, true, 200, "ok", "failing", true, "does not answer"},
		{"JetStream unwritable", secret, nil, true, 503, "failing", "ok", true, "cannot write to JetStream"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t)
			f.set(func(f *fixture) { f.jetstream, f.idp, f.discovered = c.jetstream, c.idp, c.discovered })
			code, res := f.readyz(t)
			js, idp := res.Checks[CheckJetStream], res.Checks[CheckIdP]
			if code != c.code || js.State != c.jsState || idp.State != c.idpSt || idp.Ready != c.idpReady {
				t.Fatalf("%d %+v; want %d, jetstream %s, idp %s (ready %v)", code, res, c.code, c.jsState, c.idpSt, c.idpReady)
			}
			if (code == 200) != (res.Status == "ready") {
				t.Errorf("status %q with code %d", res.Status, code)
			}
			if c.reasonSubstring != "" && !strings.Contains(js.Reason+idp.Reason, c.reasonSubstring) {
				t.Errorf("reasons %q / %q lack %q", js.Reason, idp.Reason, c.reasonSubstring)
			}
			metrics := string(f.do(t, "GET", "/metrics", "", "").body)
			for name, want := range map[string]bool{"edgepass_ready": c.code == 200, "edgepass_idp_up": c.idp == nil, "edgepass_jetstream_up": c.jetstream == nil} {
				line := fmt.Sprintf("%s %d", name, map[bool]int{false: 0, true: 1}[want])
				if !strings.Contains(metrics, "\n"+line+"\n") {
					t.Errorf("metrics lack %q", line)
				}
			}
		})
	}
}

func TestReadyzTimesOut(t *testing.T) {
	f := newFixture(t)
	f.h.opts.CheckTimeout = 50 * time.Millisecond
	f.set(func(f *fixture) { f.jetstream = func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() } })
	if code, res := f.readyz(t); code != http.StatusServiceUnavailable || res.Checks[CheckJetStream].State != "failing" {
		t.Fatalf("hung check: %d %+v", code, res)
	}
}

// Readiness probes from a kubelet every few seconds must not each write to
// NATS: results are reused for CheckCache.
func TestReadyzCachesProbes(t *testing.T) {
	f := newFixture(t)
	clock := t0
	f.h.now = func() time.Time { return clock }
	f.set(func(*fixture) {})
	for range 5 {
		f.readyz(t)
	}
	if f.probes != 2 {
		t.Fatalf("%d probes for 5 /readyz within the cache time, want 2 (one per check)", f.probes)
	}
	clock = clock.Add(f.h.opts.CheckCache)
	f.readyz(t)
	if f.probes != 4 {
		t.Fatalf("%d probes after the cache time, want 4", f.probes)
	}
}

// RunChecks keeps the metrics current without /readyz being called.
func TestRunChecksRefreshesMetrics(t *testing.T) {
	f := newFixture(t)
	f.set(func(f *fixture) { f.idp = func(context.Context) error { return errors.New("down") } })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { f.h.RunChecks(ctx, time.Hour); close(done) }()
	poll.Until(t, 5*time.Second, "RunChecks to set edgepass_idp_up", func() bool {
		return strings.Contains(string(f.do(t, "GET", "/metrics", "", "").body), "\nedgepass_idp_up 0\n")
	})
	cancel()
	<-done
}

func TestStoreErrorsAreGeneric(t *testing.T) {
	f := newFixture(t)
	f.store.Fail = errors.New("kv: secret detail 42")
	for _, p := range []struct{ m, path string }{{"GET", "/api/v1/sessions"}, {"GET", "/api/v1/sessions/sid-a1"}, {"POST", "/api/v1/users/alice/revoke"}} {
		r := f.api(t, p.m, p.path, "")
		if r.status != http.StatusInternalServerError || strings.Contains(string(r.body), "secret detail") {
			t.Errorf("%s %s: %d %s; want a generic 500", p.m, p.path, r.status, r.body)
		}
	}
}

func TestMetricsEndpoint(t *testing.T) {
	f := newFixture(t)
	m := f.h.opts.Metrics
	m.LoginSucceeded()
	m.LoginFailed("nonce")
	m.ObservePublish(3 * time.Millisecond)
	m.Verified("revoked")
	f.api(t, "DELETE", "/api/v1/sessions/sid-a1", "")
	r := f.do(t, "GET", "/metrics", "", "")
	if r.status != http.StatusOK {
		t.Fatalf("metrics: %d", r.status)
	}
	for _, want := range []string{
		"edgepass_logins_total 1",
		`edgepass_login_failures_total{reason="nonce"} 1`,
		`edgepass_revocations_total{kind="admin_session"} 1`,
		"edgepass_sessions 2",
		"edgepass_publish_seconds_count 1",
		`edgepass_verify_total{outcome="revoked"} 1`,
		"go_goroutines",
	} {
		if !strings.Contains(string(r.body), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	var nilMetrics *Metrics
	nilMetrics.LoginSucceeded() // a nil *Metrics must be safe
	nilMetrics.Revoked("x")
}

func TestNewRequiresTokenAndDependencies(t *testing.T) {
	ok := Options{Token: testToken, Store: sessiontest.New(), Edge: &fakeEdge{}, Keys: &fakeKeys{}, Edges: fakeEdges{}}
	if _, err := New(ok); err != nil {
		t.Fatal(err)
	}
	noToken := ok
	noToken.Token = ""
	if _, err := New(noToken); err == nil || !strings.Contains(err.Error(), "admin.token") {
		t.Fatalf("no token: %v", err)
	}
	noStore := ok
	noStore.Store = nil
	if _, err := New(noStore); err == nil {
		t.Fatal("no store accepted")
	}
}
