package admin

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/edgepass/edgepass/daemon/internal/sessiontest"
	"github.com/edgepass/edgepass/daemon/session"
)

// usersFixture has users whose sub differs from their username and email,
// as with every real IdP, and two subjects sharing a username.
func usersFixture(t *testing.T) (*fixture, *clearingEdge) {
	t.Helper()
	at := func(m int) time.Time { return t0.Add(time.Duration(m) * time.Minute) }
	f := &fixture{
		store: sessiontest.New(
			session.Session{ID: "sid-alice1", Subject: "8f3c-alice", Username: "alice", Email: "Alice@Example.com", IssuedAt: at(0), ExpiresAt: at(600)},
			session.Session{ID: "sid-alice2", Subject: "8f3c-alice", Username: "alice", Email: "Alice@Example.com", IssuedAt: at(1), ExpiresAt: at(600)},
			session.Session{ID: "sid-bob", Subject: "77-bob", Username: "bob", Email: "bob@example.com", IssuedAt: at(2), ExpiresAt: at(600)},
			session.Session{ID: "sid-sam1", Subject: "s-1", Username: "sam", Email: "sam1@example.com", IssuedAt: at(3), ExpiresAt: at(600)},
			session.Session{ID: "sid-sam2", Subject: "s-2", Username: "sam", Email: "sam2@example.com", IssuedAt: at(4), ExpiresAt: at(600)},
			// a user whose username is another's sub
			session.Session{ID: "sid-eve", Subject: "eve-sub", Username: "77-bob", IssuedAt: at(5), ExpiresAt: at(600)},
		),
		keys: &fakeKeys{},
	}
	edge := &clearingEdge{&fakeEdge{}}
	f.edge = edge.fakeEdge
	f.serve(t, Options{Token: testToken, Store: f.store, Edge: edge, Keys: f.keys, Edges: fakeEdges{}})
	return f, edge
}

// Silent no-op: `edgepass users revoke alice` (a username) answered 200,
// revoked the subject "alice" that no token carries, and alice's token kept
// working. Users are found by sub, then username, then email.
func TestRevokeUserResolvesUsernameAndEmail(t *testing.T) {
	cases := []struct {
		user, wantSub, matched string
		sessions               int
	}{
		{"alice", "8f3c-alice", "username", 2},
		{"ALICE@example.COM", "8f3c-alice", "email", 2},
		{"8f3c-alice", "8f3c-alice", "sub", 2},
		{"77-bob", "77-bob", "sub", 1}, // the sub wins over eve's username
		{"bob@example.com", "77-bob", "email", 1},
		{"sub:never-logged-in", "never-logged-in", "explicit sub", 0},
		{"sub:77-bob", "77-bob", "explicit sub", 1},
	}
	for _, c := range cases {
		t.Run(c.user, func(t *testing.T) {
			f, _ := usersFixture(t)
			r := f.api(t, "POST", "/api/v1/users/"+url.PathEscape(c.user)+"/revoke", "")
			var res RevokeResult
			r.json(t, &res)
			if r.status != http.StatusOK || res.Subject != c.wantSub || res.Sessions != c.sessions || res.MatchedBy != c.matched {
				t.Fatalf("status %d %s; want sub %s matched by %s with %d sessions", r.status, r.body, c.wantSub, c.matched, c.sessions)
			}
			if len(f.edge.calls) != 1 || f.edge.calls[0].op != "user" || f.edge.calls[0].key != c.wantSub {
				t.Fatalf("edge calls %+v, want one user revocation of %s", f.edge.calls, c.wantSub)
			}
		})
	}
}

// An unknown or ambiguous user is refused, never revoked as a sub nobody has.
func TestUserCommandsRefuseUnknownAndAmbiguousUsers(t *testing.T) {
	ops := []struct{ method, path, body string }{
		{"POST", "/api/v1/users/%s/revoke", ""},
		{"PUT", "/api/v1/users/%s/groups", `{"groups":["x"]}`},
		{"DELETE", "/api/v1/users/%s/groups", ""},
		{"GET", "/api/v1/sessions?user=%s", ""},
	}
	cases := []struct {
		user   string
		status int
		msg    string
		subs   []string
	}{
		{"ghost", http.StatusNotFound, "sub:ghost", nil},
		{"sam", http.StatusConflict, "s-1, s-2", []string{"s-1", "s-2"}},
		{"sub:", http.StatusBadRequest, "sub:", nil},
	}
	for _, op := range ops {
		for _, c := range cases {
			f, _ := usersFixture(t)
			r := f.api(t, op.method, strings.Replace(op.path, "%s", url.PathEscape(c.user), 1), op.body)
			if r.status != c.status {
				t.Errorf("%s %s for %q: status %d %s, want %d", op.method, op.path, c.user, r.status, r.body, c.status)
				continue
			}
			if msg := r.errorMsg(t); !strings.Contains(msg, c.msg) {
				t.Errorf("%s %s for %q: error %q does not mention %q", op.method, op.path, c.user, msg, c.msg)
			}
			var body struct {
				Candidates []string `json:"candidates"`
			}
			r.json(t, &body)
			if !slices.Equal(body.Candidates, c.subs) {
				t.Errorf("%s %s for %q: candidates %v, want %v", op.method, op.path, c.user, body.Candidates, c.subs)
			}
			if len(f.edge.calls) != 0 || f.store.Len() != 6 {
				t.Errorf("%s %s for %q changed state: %+v", op.method, op.path, c.user, f.edge.calls)
			}
		}
	}
}

// Groups and the session list find users the same way.
func TestGroupsAndSessionListResolveUsers(t *testing.T) {
	f, edge := usersFixture(t)
	if r := f.api(t, "PUT", "/api/v1/users/alice/groups", `{"groups":["admins"]}`); r.status != http.StatusOK {
		t.Fatalf("set groups: %d %s", r.status, r.body)
	}
	if r := f.api(t, "DELETE", "/api/v1/users/bob@example.com/groups", ""); r.status != http.StatusOK {
		t.Fatalf("clear groups: %d %s", r.status, r.body)
	}
	if r := f.api(t, "PUT", "/api/v1/users/sub:new-hire/groups", `{"groups":["staff"]}`); r.status != http.StatusOK {
		t.Fatalf("groups of a sub without sessions: %d %s", r.status, r.body)
	}
	var got []string
	for _, c := range edge.calls {
		got = append(got, c.op+" "+c.key)
	}
	if want := []string{"groups 8f3c-alice", "clear 77-bob", "groups new-hire"}; !slices.Equal(got, want) {
		t.Fatalf("edge calls %v, want %v", got, want)
	}
	var l SessionList
	f.api(t, "GET", "/api/v1/sessions?user=alice", "").json(t, &l)
	if len(l.Sessions) != 2 || l.Sessions[0].Subject != "8f3c-alice" {
		t.Fatalf("sessions of alice: %+v", l.Sessions)
	}
	r := f.api(t, "GET", "/api/v1/sessions?user=sub:nobody", "")
	if r.status != http.StatusOK || !strings.Contains(string(r.body), `"sessions": []`) {
		t.Fatalf("explicit sub without sessions: %d %s, want an empty list", r.status, r.body)
	}
}

// A user request scans the session bucket once: the lookup's read also
// lists the user's sessions and names the audit event. (Revoking reads
// again after publishing, to delete a session created meanwhile.)
func TestUserRequestsScanTheSessionsOnce(t *testing.T) {
	f, _ := usersFixture(t)
	for _, c := range []struct{ method, path, body string }{
		{"GET", "/api/v1/sessions?user=alice", ""},
		{"PUT", "/api/v1/users/alice/groups", `{"groups":["staff"]}`},
		{"DELETE", "/api/v1/users/alice/groups", ""},
	} {
		f.store.Lists()
		if r := f.api(t, c.method, c.path, c.body); r.status != http.StatusOK {
			t.Fatalf("%s %s: %d %s", c.method, c.path, r.status, r.body)
		}
		if n := f.store.Lists(); n != 1 {
			t.Errorf("%s %s scanned the sessions %d times, want once", c.method, c.path, n)
		}
	}
}
