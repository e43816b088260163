package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/edgepass/edgepass/integration/harness"
	"github.com/edgepass/edgepass/plugin/natsedge"
)

// Scenario 3: the group-limited route (allowedGroups: admins) answers 403 to
// bob (staff) and 200 to alice (staff, admins), on every replica.
func TestGroupLimitedRoute(t *testing.T) {
	s := shared(t)
	alice := signIn(t, s, harness.AliceUser, harness.AlicePassword)
	bob := signIn(t, s, harness.BobUser, harness.BobPassword)
	if !sameSet(bob.claims.Groups, harness.BobGroups) {
		t.Fatalf("bob's token groups %v, want %v", bob.claims.Groups, harness.BobGroups)
	}
	path := harness.PathAdmins + "/console"
	for _, tr := range s.Traefiks {
		code, body, e := get(t, tr.URL+path, bearer(bob.token))
		if code != http.StatusForbidden || e != nil {
			t.Fatalf("%s: bob on the admins route: %d %.200s, want 403 and no backend call", tr.Spec.Name, code, body)
		}
		var msg struct{ Error string }
		if err := json.Unmarshal(body, &msg); err != nil || msg.Error != "forbidden" {
			t.Errorf("%s: 403 body %q, want {\"error\":\"forbidden\"}", tr.Spec.Name, body)
		}
		// A browser gets 403 too, not a login loop.
		req, _ := harness.NavRequest("GET", tr.URL+path, nil)
		resp, body, err := bob.browser.Do(req)
		if err != nil || resp.StatusCode != http.StatusForbidden {
			t.Fatalf("%s: bob's browser on the admins route: %v %d %.200s", tr.Spec.Name, err, resp.StatusCode, body)
		}

		code, body, e = get(t, tr.URL+path, bearer(alice.token))
		if code != http.StatusOK || e == nil {
			t.Fatalf("%s: alice on the admins route: %d %.200s, want 200", tr.Spec.Name, code, body)
		}
		if e.Get(harness.HeaderUser) != "alice" {
			t.Errorf("%s: backend saw user %q", tr.Spec.Name, e.Get(harness.HeaderUser))
		}
		// bob is still fine on the route open to every signed-in user.
		code, body, e = get(t, tr.URL+harness.PathApp+"/x", bearer(bob.token))
		if code != http.StatusOK || e == nil || e.Get(harness.HeaderUser) != "bob" || e.Get(harness.HeaderGroups) != "staff" {
			t.Fatalf("%s: bob on the app route: %d %.300s", tr.Spec.Name, code, body)
		}
	}

	// Every replica reports its refusals by reason in its heartbeat, and the
	// daemon exports them: an operator sees where 403s come from.
	if _, err := harness.WaitEvery(200*time.Millisecond, 3*natsedge.HeartbeatInterval, func() (bool, string) {
		_, metrics := admin(t, s.Daemon, "GET", "/metrics", nil)
		n := 0
		for _, line := range strings.Split(string(metrics), "\n") {
			if strings.HasPrefix(line, "edgepass_edge_refusals_total{") && strings.Contains(line, `reason="not_allowed"`) && !strings.HasSuffix(line, " 0") {
				n++
			}
		}
		return n >= len(s.Traefiks), fmt.Sprintf("%d replicas report not_allowed refusals, want %d:\n%s", n, len(s.Traefiks), grepLines(string(metrics), "edgepass_edge_refusals_total"))
	}); err != nil {
		t.Fatalf("refusals by reason: %v", err)
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
