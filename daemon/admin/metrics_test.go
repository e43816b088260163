package admin

import (
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/edgepass/edgepass/plugin/natsedge"
)

func scrape(t *testing.T, m *Metrics) string {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	return string(body)
}

// Every labelled series exists at zero from the first scrape (an alert on
// rate(edgepass_login_failures_total{reason="state"}) must not wait for the
// first failure), and the release is exported.
func TestMetricsSeriesStartAtZero(t *testing.T) {
	m := NewMetrics(nil)
	m.InitSeries(Labels{
		LoginFailures: []string{"state", "rate_limited"}, Revocations: []string{"logout"},
		VerifyOutcomes: []string{"ok", "forbidden"}, RefreshOutcomes: []string{"unchanged", "revoked"}, GroupLimits: []string{"count"},
	})
	m.Refreshed("revoked")
	out := scrape(t, m)
	for _, want := range []string{
		`edgepass_login_failures_total{reason="state"} 0`,
		`edgepass_login_failures_total{reason="rate_limited"} 0`,
		`edgepass_revocations_total{kind="logout"} 0`,
		`edgepass_revocations_total{kind="admin_key"} 0`,
		`edgepass_verify_total{outcome="forbidden"} 0`,
		`edgepass_refresh_total{outcome="unchanged"} 0`,
		`edgepass_refresh_total{outcome="revoked"} 1`,
		`edgepass_groups_capped_total{limit="count"} 0`,
		`edgepass_build_info{commit=`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

type listEdges []EdgeStatus

func (l listEdges) List() []EdgeStatus { return l }

// Each edge replica's sync state is a metric: an edge that stopped
// following revocations shows up in alerts, not only in `edgepass edges`.
func TestEdgeSyncMetrics(t *testing.T) {
	m := NewMetrics(nil)
	now := time.Now()
	m.WatchEdges(listEdges{
		{Heartbeat: natsedge.Heartbeat{Edge: "traefik", Replica: "a", Synced: true, Rejected: 2, Refusals: map[string]uint64{"not_allowed": 5}}, Received: now.Add(-3 * time.Second)},
		{Heartbeat: natsedge.Heartbeat{Edge: "traefik", Replica: "b"}, Received: now.Add(-time.Minute), Stale: true, Behind: 7},
	})
	out := scrape(t, m)
	for _, want := range []string{
		`edgepass_edge_synced{edge="traefik",replica="a"} 1`,
		`edgepass_edge_synced{edge="traefik",replica="b"} 0`,
		`edgepass_edge_behind_messages{edge="traefik",replica="b"} 7`,
		`edgepass_edge_stale{edge="traefik",replica="b"} 1`,
		`edgepass_edge_rejected_facts{edge="traefik",replica="a"} 2`,
		`edgepass_edge_refusals_total{edge="traefik",reason="not_allowed",replica="a"} 5`,
		`edgepass_edge_heartbeat_age_seconds{edge="traefik",replica="b"} 6`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("metrics lack %s\n%s", want, grep(out, "edgepass_edge_"))
		}
	}
}

func grep(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
