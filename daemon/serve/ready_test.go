package serve

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/edgepass/edgepass/daemon/internal/fakeidp"
	"github.com/edgepass/edgepass/daemon/internal/poll"
)

// readiness is the body of GET /readyz.
type readiness struct {
	Status string `json:"status"`
	Checks map[string]struct {
		State  string `json:"state"`
		Ready  bool   `json:"ready"`
		Reason string `json:"reason"`
	} `json:"checks"`
}

func (r *running) readyz(t *testing.T) (int, readiness) {
	t.Helper()
	code, _, body := do(t, "GET", r.admin("/readyz"), nil)
	var res readiness
	if err := json.Unmarshal([]byte(body), &res); err != nil {
		t.Fatalf("/readyz body %q: %v", body, err)
	}
	return code, res
}

// Misleading health: /readyz said 503 with no reason while the IdP was down
// at start, then reported the IdP fine forever after one success. Now: not
// ready until discovery worked once (no session can be issued before), ready
// after that whatever the IdP does (/verify and revocation work without it),
// with the IdP's current state and a reason in the body and edgepass_idp_up.
func TestReadyzFollowsTheIdP(t *testing.T) {
	idp := fakeidp.Start("edgepass", fakeidp.User{Subject: "u-1", Username: "alice"})
	defer idp.Close()
	idp.SetDown(true)
	d := start(t, testConfig(t, idp, t.TempDir()))

	code, res := d.readyz(t)
	if idp := res.Checks["idp"]; code != 503 || res.Status != "not ready" || idp.State != "failing" || idp.Ready || !strings.Contains(idp.Reason, "discovery") {
		t.Fatalf("IdP down at start: %d %+v; want 503 naming IdP discovery", code, res)
	}
	if js := res.Checks["jetstream"]; js.State != "ok" || !js.Ready {
		t.Errorf("jetstream check %+v, want ok", js)
	}

	idp.SetDown(false)
	poll.Until(t, 10*time.Second, "ready once the IdP answers", func() bool {
		code, res := d.readyz(t)
		return code == 200 && res.Checks["idp"].State == "ok"
	})

	idp.SetDown(true)
	poll.Until(t, 10*time.Second, "the IdP reported down while the daemon stays ready", func() bool {
		code, res := d.readyz(t)
		idp := res.Checks["idp"]
		return code == 200 && res.Status == "ready" && idp.State == "failing" && idp.Ready && idp.Reason != ""
	})
	_, _, metrics := do(t, "GET", d.admin("/metrics"), nil)
	if !strings.Contains(metrics, "edgepass_idp_up 0") || !strings.Contains(metrics, "edgepass_ready 1") {
		t.Errorf("metrics lack edgepass_idp_up 0 and edgepass_ready 1:\n%s", grepLines(metrics, "edgepass_"))
	}
}

// Misleading health: /readyz said ready after JetStream quorum was lost,
// while every revocation failed with 500. Now it writes and reads back a
// key in the daemon's own bucket.
func TestReadyzFailsWhenJetStreamIsUnwritable(t *testing.T) {
	idp := fakeidp.Start("edgepass", fakeidp.User{Subject: "u-1", Username: "alice"})
	defer idp.Close()
	cfg := testConfig(t, idp, t.TempDir())
	d := start(t, cfg)
	poll.Until(t, 10*time.Second, "ready", func() bool { code, _ := d.readyz(t); return code == 200 })

	if err := d.nats.JS.DeleteKeyValue(context.Background(), cfg.NATS.SessionBucket); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, 10*time.Second, "not ready without the session bucket", func() bool {
		code, res := d.readyz(t)
		js := res.Checks["jetstream"]
		return code == 503 && js.State == "failing" && !js.Ready && js.Reason != ""
	})
	_, _, metrics := do(t, "GET", d.admin("/metrics"), nil)
	if !strings.Contains(metrics, "edgepass_ready 0") {
		t.Errorf("metrics lack edgepass_ready 0:\n%s", grepLines(metrics, "edgepass_"))
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
