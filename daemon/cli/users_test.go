package cli

import (
	"slices"
	"strings"
	"testing"
)

// Silent no-op: `edgepass users revoke alice` printed "Revoked user alice"
// and exited 0 while alice's token still worked, because only an IdP sub
// was looked up. A username or email now finds the sub; an unknown name
// fails.
func TestUsersRevokeByUsernameRevokesTheSub(t *testing.T) {
	cases := []struct {
		name    string
		args    []string
		code    int
		revoked []string
		out     string // in stdout (exit 0) or stderr
	}{
		{"username", []string{"users", "revoke", "bob"}, ExitOK, []string{"team/bob"}, "Revoked user bob (IdP sub team/bob, matched by username)"},
		{"email, any case", []string{"users", "revoke", "ALICE@example.com"}, ExitOK, []string{"alice"}, "matched by email"},
		{"unknown user", []string{"users", "revoke", "carol"}, ExitError, nil, "404"},
		{"unknown user says how to name a sub", []string{"users", "revoke", "carol"}, ExitError, nil, "sub:carol"},
		{"explicit sub without sessions", []string{"users", "revoke", "sub:u-gone"}, ExitOK, []string{"u-gone"}, "0 stored session(s)"},
		{"--sub flag", []string{"users", "revoke", "--sub", "u-gone"}, ExitOK, []string{"u-gone"}, "Revoked user u-gone"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t)
			r := f.run(c.args...)
			text := r.stdout
			if c.code != ExitOK {
				text = r.stderr
			}
			if r.code != c.code || !strings.Contains(text, c.out) {
				t.Fatalf("exit %d (want %d); stdout %q stderr %q; want %q", r.code, c.code, r.stdout, r.stderr, c.out)
			}
			if !slices.Equal(f.edge.users, c.revoked) {
				t.Fatalf("edge user revocations %v, want %v", f.edge.users, c.revoked)
			}
		})
	}
}

// groups set/clear and sessions list --user find users as users revoke does.
func TestGroupsAndSessionsListResolveUsers(t *testing.T) {
	f := newFixture(t)
	if r := f.run("groups", "set", "bob", "ops"); r.code != ExitOK || !slices.Equal(f.edge.groups["team/bob"], []string{"ops"}) {
		t.Fatalf("groups set bob: %+v, published %v", r, f.edge.groups)
	}
	if r := f.run("groups", "clear", "bob"); r.code != ExitOK {
		t.Fatalf("groups clear bob: %+v", r)
	}
	if _, ok := f.edge.groups["team/bob"]; ok {
		t.Fatal("groups clear bob did not clear team/bob")
	}
	if r := f.run("groups", "set", "nobody", "ops"); r.code != ExitError || !strings.Contains(r.stderr, "404") {
		t.Fatalf("groups set for an unknown user: %+v", r)
	}
	if r := f.run("sessions", "list", "--user=bob"); r.code != ExitOK || !strings.Contains(r.stdout, "sid-3") {
		t.Fatalf("sessions list --user=bob: %+v", r)
	}
}
