package e2e

import (
	"net/http"
	"testing"
	"time"

	"github.com/edgepass/edgepass/integration/harness"
)

// Scenario 5: PUT /api/v1/users/{sub}/groups changes what bob's existing
// token may do on every replica, without a new login; and back.
func TestGroupChangeAppliesWithoutNewLogin(t *testing.T) {
	s := shared(t)
	bob := signIn(t, s, harness.BobUser, harness.BobPassword)
	path := harness.PathAdmins + "/group-change"
	mustStatus(t, s.Traefiks, path, bearer(bob.token), http.StatusForbidden, "bob before the change")

	code, body := admin(t, s.Daemon, "PUT", "/api/v1/users/bob/groups", map[string]any{"groups": []string{"staff", "admins"}})
	if code/100 != 2 {
		t.Fatalf("PUT groups: %d %s", code, body)
	}
	took := waitStatus(t, s, s.Traefiks, path, bearer(bob.token), http.StatusOK, 10*time.Second, "groups added")
	t.Logf("group change propagation: %s", formatDurations(took))
	for _, tr := range s.Traefiks {
		_, _, e := get(t, tr.URL+path, bearer(bob.token))
		if e == nil || !sameSet(splitGroups(e.Get(harness.HeaderGroups)), []string{"staff", "admins"}) {
			t.Fatalf("%s: backend groups header after the change: %v", tr.Spec.Name, e)
		}
	}

	code, body = admin(t, s.Daemon, "PUT", "/api/v1/users/bob/groups", map[string]any{"groups": []string{"staff"}})
	if code/100 != 2 {
		t.Fatalf("PUT groups back: %d %s", code, body)
	}
	waitStatus(t, s, s.Traefiks, path, bearer(bob.token), http.StatusForbidden, 10*time.Second, "groups removed")
	_, _, e := get(t, s.Traefiks[0].URL+harness.PathApp+"/x", bearer(bob.token))
	if e == nil || e.Get(harness.HeaderGroups) != "staff" {
		t.Fatalf("backend groups header after the change back: %v", e)
	}

	// Bad bodies are refused with 400 and change nothing.
	for _, bad := range []any{map[string]any{"groups": "admins"}, map[string]any{}, []string{"admins"}} {
		code, body := admin(t, s.Daemon, "PUT", "/api/v1/users/bob/groups", bad)
		if code != http.StatusBadRequest {
			t.Errorf("PUT groups %v: %d %s, want 400", bad, code, body)
		}
	}
	mustStatus(t, s.Traefiks, path, bearer(bob.token), http.StatusForbidden, "after refused bodies")
}
