package admin

import (
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/edgepass/edgepass/plugin/natsedge"
)

// The Grafana dashboard in deploy/grafana queries only metrics the daemon
// exports: a renamed metric must not leave an empty panel behind.
func TestDashboardQueriesExportedMetrics(t *testing.T) {
	data, err := os.ReadFile("../../deploy/grafana/edgepass-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatalf("dashboard JSON: %v", err)
	}
	m := NewMetrics(func() int { return 0 })
	m.InitSeries(Labels{LoginFailures: []string{"state"}, Revocations: []string{"logout"}, VerifyOutcomes: []string{"ok"}, RefreshOutcomes: []string{"unchanged"}, GroupLimits: []string{"count"}})
	m.setReady(true)
	m.ObservePublish(time.Millisecond)
	m.WatchEdges(listEdges{{Heartbeat: natsedge.Heartbeat{Edge: "e", Replica: "r", Refusals: map[string]uint64{"not_allowed": 1}}, Received: time.Now()}})
	exported := scrape(t, m)
	name := regexp.MustCompile(`edgepass_[a-z_]+`)
	queried := 0
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			for _, metric := range name.FindAllString(tg.Expr, -1) {
				queried++
				base := strings.TrimSuffix(metric, "_bucket")
				if !strings.Contains(exported, "\n"+base) && !strings.HasPrefix(exported, base) {
					t.Errorf("panel %q queries %s, which the daemon does not export", p.Title, metric)
				}
			}
		}
	}
	if queried < 10 {
		t.Fatalf("the dashboard queries only %d metrics", queried)
	}
}
