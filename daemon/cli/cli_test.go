package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgepass/edgepass/daemon/admin"
	"github.com/edgepass/edgepass/daemon/edgepub"
	"github.com/edgepass/edgepass/daemon/internal/sessiontest"
	keyring "github.com/edgepass/edgepass/daemon/keys"
	"github.com/edgepass/edgepass/daemon/session"
)

const token = "cli-test-token-0123456789"

type edge struct {
	mu      sync.Mutex
	revoked []string
	users   []string
	groups  map[string][]string
}

func (e *edge) RevokeSession(_ context.Context, sid string, _ time.Time) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.revoked = append(e.revoked, sid)
	return nil
}

func (e *edge) RevokeUser(_ context.Context, sub string, _ time.Time) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.users = append(e.users, sub)
	return nil
}

func (e *edge) SetGroups(_ context.Context, sub string, g []string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.groups[sub] = g
	return nil
}

func (e *edge) ClearGroups(_ context.Context, sub string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.groups, sub)
	return nil
}

type keys struct {
	n       int
	revoked []string
}

func (k *keys) Rotate(context.Context) (string, error) { k.n++; return "kid-new", nil }
func (k *keys) Revoke(_ context.Context, kid string) (keyring.RevokeResult, error) {
	if kid != "-ldU2ZQyb0Mn1iJn" && kid != "kidB" {
		return keyring.RevokeResult{}, keyring.ErrUnknownKey
	}
	k.revoked = append(k.revoked, kid)
	return keyring.RevokeResult{KeyID: kid, WasActive: true, SigningKeyID: "kid-new"}, nil
}
func (k *keys) Keys() []keyring.KeyInfo {
	return []keyring.KeyInfo{{ID: "kidA", State: "revoked", Created: t0, Activated: t0, Retired: t0.Add(time.Hour), Revoked: t0.Add(time.Hour)},
		{ID: "kidB", State: "active", Created: t0, Activated: t0.Add(time.Hour)}}
}
func (k *keys) KeyID() string          { return "kidB" }
func (k *keys) Anchor() string         { return "ANCHORpublicKEY0123456789abcdefghijklmnopq" }
func (k *keys) AnchorID() string       { return "anchor-id" }
func (k *keys) Horizon() time.Duration { return 12 * time.Hour }

type edges []admin.EdgeStatus

func (e edges) List() []admin.EdgeStatus { return e }

var (
	t0  = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	now = t0.Add(time.Hour)
)

type fixture struct {
	srv   *httptest.Server
	store *sessiontest.Store
	edge  *edge
	keys  *keys
}

// newFixture runs the real admin handler with fakes of the core.
func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{
		store: sessiontest.New(
			session.Session{ID: "sid-1", Subject: "alice", Username: "alice", Email: "alice@example.com", Groups: []string{"staff", "admins"},
				IssuedAt: t0, ExpiresAt: t0.Add(12 * time.Hour), RefreshToken: "rt-secret"},
			session.Session{ID: "sid-2", Subject: "mallory", Username: "\x1b[2J\x1b[31mroot\u202e", IssuedAt: t0.Add(time.Minute), ExpiresAt: t0.Add(13 * time.Hour)},
			session.Session{ID: "sid-3", Subject: "team/bob", Username: "bob", IssuedAt: t0.Add(2 * time.Minute), ExpiresAt: t0.Add(13 * time.Hour)},
		),
		edge: &edge{groups: map[string][]string{}},
		keys: &keys{},
	}
	h, err := admin.New(admin.Options{Token: token, Store: f.store, Edge: f.edge, Keys: f.keys,
		Edges: edges{{Heartbeat: edgepub.Heartbeat{Replica: "traefik-0", Version: "v0.2.0", Bucket: "edgepass_edge", Seq: 42, Synced: true, HeardAgoMs: 1200, RevokedSessions: 3},
			Received: now.Add(-4 * time.Second), Behind: 2}}})
	if err != nil {
		t.Fatal(err)
	}
	f.srv = httptest.NewServer(h)
	t.Cleanup(f.srv.Close)
	return f
}

type result struct {
	code           int
	stdout, stderr string
}

// run runs the CLI with env as its whole environment.
func run(env map[string]string, args ...string) result {
	var out, errb bytes.Buffer
	r := &runner{stdout: &out, stderr: &errb, now: func() time.Time { return now },
		env: func(k string) (string, bool) { v, ok := env[k]; return v, ok }}
	code := r.run(context.Background(), args)
	return result{code, out.String(), errb.String()}
}

func (f *fixture) run(args ...string) result {
	return run(map[string]string{"EDGEPASS_ADMIN_URL": f.srv.URL, "EDGEPASS_ADMIN_TOKEN": token}, args...)
}

func TestSessionsListTable(t *testing.T) {
	f := newFixture(t)
	r := f.run("sessions", "list")
	if r.code != ExitOK {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[0], "SID") || !strings.Contains(lines[0], "EXPIRES") {
		t.Fatalf("table:\n%s", r.stdout)
	}
	if !strings.Contains(lines[1], "sid-1") || !strings.Contains(lines[1], "staff,admins") || !strings.Contains(lines[1], "2030-01-02 03:04:05Z") {
		t.Errorf("row 1: %q", lines[1])
	}
	if strings.Contains(r.stdout, "rt-secret") {
		t.Error("refresh token printed")
	}
}

// Attack: a username with terminal escape sequences or bidi overrides,
// chosen at the IdP to rewrite the operator's terminal.
func TestSessionsListSanitizesTerminalEscapes(t *testing.T) {
	f := newFixture(t)
	r := f.run("sessions", "list")
	if strings.ContainsAny(r.stdout, "\x1b\u202e") {
		t.Fatalf("control characters reached the terminal: %q", r.stdout)
	}
	if !strings.Contains(r.stdout, "?[2J?[31mroot?") {
		t.Fatalf("sanitized name missing: %q", r.stdout)
	}
}

func TestSessionsListUserFilterAndJSON(t *testing.T) {
	f := newFixture(t)
	r := f.run("--json", "sessions", "--user", "alice", "list")
	if r.code != ExitOK {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	var l admin.SessionList
	if err := json.Unmarshal([]byte(r.stdout), &l); err != nil {
		t.Fatalf("--json output %q: %v", r.stdout, err)
	}
	if len(l.Sessions) != 1 || l.Sessions[0].ID != "sid-1" {
		t.Fatalf("filtered sessions %+v", l.Sessions)
	}
	// An unknown user is an error, not an empty list that reads as "signed
	// out everywhere"; an IdP sub given as such may have no sessions.
	if r := f.run("sessions", "list", "--user=nobody"); r.code != ExitError || !strings.Contains(r.stderr, "404") {
		t.Fatalf("unknown user: %+v", r)
	}
	if r := f.run("sessions", "list", "--user=nobody", "--sub"); r.code != ExitOK || !strings.Contains(r.stdout, "No sessions.") {
		t.Fatalf("empty list: %+v", r)
	}
	if r := f.run("sessions", "list", "--user="); r.code != ExitUsage {
		t.Fatalf("empty --user: exit %d", r.code)
	}
}

func TestSessionsShow(t *testing.T) {
	f := newFixture(t)
	r := f.run("sessions", "show", "sid-1")
	if r.code != ExitOK || !strings.Contains(r.stdout, "alice@example.com") || strings.Contains(r.stdout, "rt-secret") {
		t.Fatalf("%+v", r)
	}
}

func TestSessionsRevoke(t *testing.T) {
	f := newFixture(t)
	r := f.run("sessions", "revoke", "sid-1")
	if r.code != ExitOK || !strings.Contains(r.stdout, "Revoked session sid-1 of alice") {
		t.Fatalf("%+v", r)
	}
	if !slices.Equal(f.edge.revoked, []string{"sid-1"}) {
		t.Fatalf("edge revocations %v", f.edge.revoked)
	}
	r = f.run("sessions", "revoke", "sid-1")
	if r.code != ExitError || !strings.Contains(r.stderr, "404 no such session") || !strings.Contains(r.stderr, "edgepass sessions list") {
		t.Fatalf("unknown session: %+v", r)
	}
}

func TestUsersRevokeSubjectWithSlash(t *testing.T) {
	f := newFixture(t)
	r := f.run("users", "revoke", "team/bob")
	if r.code != ExitOK || !strings.Contains(r.stdout, "Revoked user team/bob") || !strings.Contains(r.stdout, "1 stored session(s)") {
		t.Fatalf("%+v", r)
	}
	if !slices.Equal(f.edge.users, []string{"team/bob"}) {
		t.Fatalf("edge user revocations %v", f.edge.users)
	}
}

func TestGroupsSet(t *testing.T) {
	f := newFixture(t)
	r := f.run("groups", "set", "alice", "admins, staff,,ops")
	if r.code != ExitOK || !strings.Contains(r.stdout, "admins, staff, ops") {
		t.Fatalf("%+v", r)
	}
	if !slices.Equal(f.edge.groups["alice"], []string{"admins", "staff", "ops"}) {
		t.Fatalf("published %v", f.edge.groups["alice"])
	}
	r = f.run("groups", "set", "alice", "")
	if r.code != ExitOK || f.edge.groups["alice"] == nil || len(f.edge.groups["alice"]) != 0 {
		t.Fatalf("clearing groups: %+v, published %#v", r, f.edge.groups["alice"])
	}
	r = f.run("groups", "clear", "alice")
	if _, ok := f.edge.groups["alice"]; r.code != ExitOK || ok || !strings.Contains(r.stdout, "Cleared the group override of alice") {
		t.Fatalf("groups clear: %+v", r)
	}
	r = f.run("groups", "set", "alice", strings.Repeat("g,", 300)+"x")
	if r.code != ExitError || !strings.Contains(r.stderr, "400") {
		t.Fatalf("refused by the API: %+v", r)
	}
}

func TestKeysRotate(t *testing.T) {
	f := newFixture(t)
	r := f.run("keys", "rotate")
	if r.code != ExitOK || !strings.Contains(r.stdout, "kid-new") || f.keys.n != 1 {
		t.Fatalf("%+v", r)
	}
}

func TestKeysList(t *testing.T) {
	f := newFixture(t)
	r := f.run("keys", "list")
	if r.code != ExitOK {
		t.Fatalf("%+v", r)
	}
	for _, want := range []string{"trustAnchors: [ANCHORpublicKEY0123456789abcdefghijklmnopq]", "12h0m0s", "KID", "kidA", "revoked", "kidB", "active"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("keys list lacks %q:\n%s", want, r.stdout)
		}
	}
}

func TestKeysAnchorPrintsOnlyTheAnchor(t *testing.T) {
	f := newFixture(t)
	r := f.run("keys", "anchor")
	if r.code != ExitOK || r.stdout != "ANCHORpublicKEY0123456789abcdefghijklmnopq\n" {
		t.Fatalf("%+v", r)
	}
}

func TestKeysRevoke(t *testing.T) {
	f := newFixture(t)
	s, rev, _ := f.store.Get(context.Background(), "sid-1")
	s.KeyID = "kidB"
	_, _ = f.store.Update(context.Background(), s, rev)
	r := f.run("keys", "revoke", "kidB")
	if r.code != ExitOK || !strings.Contains(r.stdout, "Revoked key kidB") || !strings.Contains(r.stdout, "1 session(s)") ||
		!strings.Contains(r.stdout, "signed with kid-new") || f.store.Has("sid-1") {
		t.Fatalf("%+v", r)
	}
	// A kid may start with "-" like a session id.
	if r := f.run("keys", "revoke", "-ldU2ZQyb0Mn1iJn"); r.code != ExitOK {
		t.Fatalf("kid starting with a dash: %+v", r)
	}
	r = f.run("keys", "revoke", "nope")
	if r.code != ExitError || !strings.Contains(r.stderr, "404") || !strings.Contains(r.stderr, "edgepass keys list") {
		t.Fatalf("unknown kid: %+v", r)
	}
}

func TestEdges(t *testing.T) {
	f := newFixture(t)
	r := f.run("edges")
	if r.code != ExitOK {
		t.Fatalf("%+v", r)
	}
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "REPLICA") || !strings.Contains(lines[0], "BEHIND") {
		t.Fatalf("table:\n%s", r.stdout)
	}
	for _, want := range []string{"traefik-0", "v0.2.0", "edgepass_edge", "yes", "42", "1s ago", "4s ago"} {
		if !strings.Contains(lines[1], want) {
			t.Errorf("row %q lacks %q", lines[1], want)
		}
	}
}

func TestWrongTokenSaysWhatToCheck(t *testing.T) {
	f := newFixture(t)
	r := run(map[string]string{}, "sessions", "list", "--admin.url="+f.srv.URL, "--admin.token=wrong")
	want := "edgepass: admin API at " + f.srv.URL + ": 401 unauthorized; check --admin.token"
	if r.code != ExitError || !strings.HasPrefix(r.stderr, want) {
		t.Fatalf("exit %d stderr %q; want prefix %q", r.code, r.stderr, want)
	}
	if strings.Contains(r.stderr, "wrong") {
		t.Error("the token was echoed")
	}
}

func TestTokenSources(t *testing.T) {
	f := newFixture(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "token")
	if err := os.WriteFile(file, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	url := "--admin.url=" + f.srv.URL
	if r := run(nil, "edges", url, "--admin.tokenFile", file); r.code != ExitOK {
		t.Fatalf("--admin.tokenFile: %+v", r)
	}
	if r := run(map[string]string{"EDGEPASS_ADMIN_TOKENFILE": file}, "edges", url); r.code != ExitOK {
		t.Fatalf("EDGEPASS_ADMIN_TOKENFILE: %+v", r)
	}
	if r := run(map[string]string{"EDGEPASS_ADMIN_TOKEN": "wrong"}, "edges", url, "--admin.token="+token); r.code != ExitOK {
		t.Fatalf("the flag must win over the environment: %+v", r)
	}
	if r := run(nil, "edges", url); r.code != ExitUsage || !strings.Contains(r.stderr, "no admin token") {
		t.Fatalf("no token: %+v", r)
	}
	if r := run(nil, "edges", url, "--admin.token=x", "--admin.tokenFile="+file); r.code != ExitUsage {
		t.Fatalf("both: %+v", r)
	}
	if r := run(nil, "edges", url, "--admin.tokenFile="+filepath.Join(dir, "missing")); r.code != ExitError ||
		!strings.Contains(r.stderr, "check --admin.tokenFile") {
		t.Fatalf("missing file: %+v", r)
	}
	// An empty token file is refused as serve refuses it (config.ReadSecretFile).
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte(" \n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if r := run(nil, "edges", url, "--admin.tokenFile="+empty); r.code != ExitError ||
		!strings.Contains(r.stderr, "is empty") || !strings.Contains(r.stderr, "check --admin.tokenFile") {
		t.Fatalf("empty file: %+v", r)
	}
}

func TestUnreachableAdminAPI(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	u := srv.URL
	srv.Close()
	r := run(map[string]string{"EDGEPASS_ADMIN_TOKEN": token, "EDGEPASS_ADMIN_URL": u}, "edges")
	if r.code != ExitError || !strings.Contains(r.stderr, "cannot reach the admin API at "+u) || !strings.Contains(r.stderr, "check --admin.url") {
		t.Fatalf("%+v", r)
	}
}

func TestNotTheAdminListener(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		_, _ = w.Write([]byte("<html>status</html>"))
	}))
	defer srv.Close()
	r := run(map[string]string{"EDGEPASS_ADMIN_TOKEN": token, "EDGEPASS_ADMIN_URL": srv.URL}, "edges")
	if r.code != ExitError || !strings.Contains(r.stderr, "admin listener") {
		t.Fatalf("%+v", r)
	}
}

// Attack: an admin URL that redirects elsewhere to collect the bearer token.
func TestTokenNotSentAcrossRedirects(t *testing.T) {
	var got string
	thief := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { got = r.Header.Get("Authorization") }))
	defer thief.Close()
	redir := httptest.NewServer(http.RedirectHandler(thief.URL+"/api/v1/edges", http.StatusTemporaryRedirect))
	defer redir.Close()
	r := run(map[string]string{"EDGEPASS_ADMIN_TOKEN": token, "EDGEPASS_ADMIN_URL": redir.URL}, "edges")
	if r.code != ExitError || got != "" {
		t.Fatalf("exit %d, token seen by the redirect target: %q", r.code, got)
	}
}

func TestUsageErrors(t *testing.T) {
	cases := [][]string{
		{},
		{"bogus"},
		{"sessions"},
		{"sessions", "delete", "x"},
		{"sessions", "revoke"},
		{"sessions", "revoke", "a", "b"},
		{"users", "revoke"},
		{"groups", "set", "alice"},
		{"groups", "clear"},
		{"keys"},
		{"edges", "extra"},
		{"keys", "rotate", "--user=x"},
		{"keys", "revoke"},
		{"keys", "revoke", "a", "b"},
		{"keys", "anchor", "x"},
		{"--nope", "edges"},
		{"edges", "--admin.url=ftp://x"},
		{"sessions", "revoke", ""},
	}
	for _, args := range cases {
		r := run(map[string]string{"EDGEPASS_ADMIN_TOKEN": token}, args...)
		if r.code != ExitUsage || r.stderr == "" {
			t.Errorf("%q: exit %d stderr %q; want 2 with a message", args, r.code, r.stderr)
		}
	}
}

func TestMissingSubcommandNamesTheChoices(t *testing.T) {
	r := run(map[string]string{"EDGEPASS_ADMIN_TOKEN": token}, "sessions")
	if r.code != ExitUsage || !strings.Contains(r.stderr, "use sessions list | revoke | show") {
		t.Fatalf("exit %d stderr %q", r.code, r.stderr)
	}
}

func TestHelp(t *testing.T) {
	for _, args := range [][]string{{"help"}, {"--help"}, {"-h"}, {"sessions", "list", "-h"}} {
		r := run(nil, args...)
		if r.code != ExitOK || !strings.Contains(r.stdout, "sessions list") {
			t.Errorf("%q: %+v", args, r)
		}
	}
	if !IsCommand("sessions") || !IsCommand("edges") || IsCommand("serve") {
		t.Error("IsCommand")
	}
}

// About one session id in 64 starts with "-" (base64url); it must be taken
// as the id, not refused as an unknown flag.
func TestSessionIDStartingWithDash(t *testing.T) {
	f := newFixture(t)
	id := "-u8sCuLNoyXSYCIRIM6qfN5ztrTUjPnvXTOx1VjFHqQ"
	_ = f.store.Put(context.Background(), &session.Session{ID: id, Subject: "x", ExpiresAt: t0})
	r := f.run("sessions", "revoke", id, "--json")
	if r.code != ExitOK || !slices.Equal(f.edge.revoked, []string{id}) {
		t.Fatalf("%+v revoked %v", r, f.edge.revoked)
	}
	// A mistyped flag is still an error, not a session id.
	if r := f.run("sessions", "list", "--jsn"); r.code != ExitUsage {
		t.Fatalf("--jsn: %+v", r)
	}
}

func TestDashDashEndsFlags(t *testing.T) {
	f := newFixture(t)
	_ = f.store.Put(context.Background(), &session.Session{ID: "-odd", Subject: "x", ExpiresAt: t0})
	r := f.run("sessions", "revoke", "--", "-odd")
	if r.code != ExitOK || !slices.Equal(f.edge.revoked, []string{"-odd"}) {
		t.Fatalf("%+v revoked %v", r, f.edge.revoked)
	}
}
