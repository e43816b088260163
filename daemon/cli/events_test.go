package cli

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/edgepass/edgepass/daemon/admin"
	"github.com/edgepass/edgepass/daemon/edgepub"
	"github.com/edgepass/edgepass/daemon/events"
	"github.com/edgepass/edgepass/daemon/internal/syncbuf"
	ptoken "github.com/edgepass/edgepass/plugin/token"
)

type overrides struct{}

func (overrides) AdminOverrides(context.Context) ([]edgepub.Override, error) {
	return []edgepub.Override{{SubjectKey: ptoken.SubjectKey("alice"), Groups: []string{"admins"}, At: t0}}, nil
}

// newAuditFixture is newFixture with the audit trail, a read-only token
// "monitor" and overrides.
func newAuditFixture(t *testing.T) (*fixture, *events.Memory) {
	t.Helper()
	f := newFixture(t)
	audit := &events.Memory{Now: func() time.Time { return now }}
	h, err := admin.New(admin.Options{Token: token, Store: f.store, Edge: f.edge, Keys: f.keys, Edges: edges{},
		Tokens: []admin.Token{{Name: "monitor", Secret: "monitor-token-0123456789", ReadOnly: true}},
		Audit:  audit, Events: audit, Overrides: overrides{}})
	if err != nil {
		t.Fatal(err)
	}
	f.srv.Close()
	f.srv = httptest.NewServer(h)
	t.Cleanup(f.srv.Close)
	return f, audit
}

func TestChangesFromTheCLIAreLabelledCLIWithTheirReason(t *testing.T) {
	f, audit := newAuditFixture(t)
	if r := f.run("users", "revoke", "bob", "--reason=left the team"); r.code != ExitOK {
		t.Fatalf("users revoke: %d %s", r.code, r.stderr)
	}
	if r := f.run("keys", "rotate"); r.code != ExitOK {
		t.Fatalf("keys rotate: %d %s", r.code, r.stderr)
	}
	ev := audit.All()
	if len(ev) != 2 {
		t.Fatalf("events %+v", ev)
	}
	if e := ev[0]; e.Kind != events.KindUserRevoked || e.Actor != admin.LegacyTokenName || e.Source != events.SourceCLI || e.Reason != "left the team" || e.User != "bob" {
		t.Errorf("users revoke recorded %+v", e)
	}
	if e := ev[1]; e.Kind != events.KindKeyRotated || e.Source != events.SourceCLI || e.Reason != "" {
		t.Errorf("keys rotate recorded %+v", e)
	}
}

func TestEventsListsAndFilters(t *testing.T) {
	f, _ := newAuditFixture(t)
	f.run("users", "revoke", "bob", "--reason=left")
	f.run("groups", "set", "alice", "admins")
	r := f.run("events")
	if r.code != ExitOK || !strings.Contains(r.stdout, "TIME") || !strings.Contains(r.stdout, "user_revoked") || !strings.Contains(r.stdout, "groups_set") {
		t.Fatalf("events: %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if strings.Index(r.stdout, "groups_set") > strings.Index(r.stdout, "user_revoked") {
		t.Errorf("not newest first:\n%s", r.stdout)
	}
	r = f.run("events", "--kind=user_revoked", "--user=BOB", "--json")
	var p events.Page
	if err := json.Unmarshal([]byte(r.stdout), &p); err != nil || len(p.Events) != 1 || p.Events[0].Reason != "left" {
		t.Fatalf("filtered JSON: %v %s", err, r.stdout)
	}
	for _, args := range [][]string{
		{"events", "--kind=nope"}, {"events", "--source=x"}, {"events", "--limit=0"}, {"events", "extra"},
		{"sessions", "list", "--follow"}, {"edges", "--kind=user_revoked"}, {"sessions", "list", "--reason=x"}, {"events", "--reason=x"},
	} {
		if r := f.run(args...); r.code != ExitUsage {
			t.Errorf("%q: exit %d, want %d (%s)", args, r.code, ExitUsage, r.stderr)
		}
	}
}

func TestEventsFollowPrintsNewEventsAsJSONLines(t *testing.T) {
	f, _ := newAuditFixture(t)
	f.run("keys", "rotate")
	old := followInterval
	followInterval = 20 * time.Millisecond
	t.Cleanup(func() { followInterval = old })
	var out, errb syncbuf.Buffer
	ctx, cancel := context.WithCancel(context.Background())
	env := map[string]string{"EDGEPASS_ADMIN_URL": f.srv.URL, "EDGEPASS_ADMIN_TOKEN": "monitor-token-0123456789"}
	r := &runner{stdout: &out, stderr: &errb, now: func() time.Time { return now }, env: func(k string) (string, bool) { v, ok := env[k]; return v, ok }}
	done := make(chan int)
	go func() { done <- r.run(ctx, []string{"events", "--follow", "--json"}) }()
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(out.String(), "key_rotated") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	f.run("users", "revoke", "bob")
	for !strings.Contains(out.String(), "user_revoked") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if code := <-done; code != ExitOK {
		t.Fatalf("follow exited %d: %s", code, errb.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("want the old event then the new one, one JSON line each:\n%s", out.String())
	}
	for i, want := range []string{events.KindKeyRotated, events.KindUserRevoked} {
		var e events.Event
		if err := json.Unmarshal([]byte(lines[i]), &e); err != nil || e.Kind != want {
			t.Errorf("line %d: %q (%v), want kind %s", i, lines[i], err, want)
		}
	}
}

// TestReadOnlyTokenCannotChangeFromTheCLI: the CLI with a read-only token
// is refused and says why.
func TestReadOnlyTokenCannotChangeFromTheCLI(t *testing.T) {
	f, audit := newAuditFixture(t)
	r := run(map[string]string{"EDGEPASS_ADMIN_URL": f.srv.URL, "EDGEPASS_ADMIN_TOKEN": "monitor-token-0123456789"}, "users", "revoke", "bob")
	if r.code != ExitError || !strings.Contains(r.stderr, "read-only") {
		t.Fatalf("read-only revoke: %d %s", r.code, r.stderr)
	}
	if len(f.edge.users) != 0 || len(audit.All()) != 0 {
		t.Fatal("a read-only token changed something")
	}
}

func TestGroupsList(t *testing.T) {
	f, _ := newAuditFixture(t)
	r := f.run("groups", "list")
	if r.code != ExitOK || !strings.Contains(r.stdout, "alice") || !strings.Contains(r.stdout, "admins") {
		t.Fatalf("groups list: %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}
