package oidcflow

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/edgepass/edgepass/daemon/admin"
	"github.com/edgepass/edgepass/daemon/edgepub"
	"github.com/edgepass/edgepass/daemon/internal/natstest"
)

// manyGroups returns n distinct group names of about size bytes each.
func manyGroups(prefix string, n, size int) []any {
	out := make([]any, n)
	for i := range out {
		name := fmt.Sprintf("%s-%04d-", prefix, i)
		out[i] = name + strings.Repeat("x", max(0, size-len(name)))
	}
	return out
}

// A user in more groups than an edge fact can carry still signs in and is
// refreshed: the IdP's list is cut to edgepub's limits (count and bytes)
// before it is stored or published, so the real publisher never refuses it.
func TestGroupsOverTheLimitAreCappedAtLoginAndRefresh(t *testing.T) {
	cases := map[string]struct {
		size  int // bytes per group name
		n     int // groups the IdP reports
		want  int // groups kept
		limit string
	}{
		"more groups than MaxGroups":    {size: 12, n: edgepub.MaxGroups + 24, want: edgepub.MaxGroups, limit: "count"},
		"more bytes than MaxGroupBytes": {size: 200, n: 400, want: edgepub.MaxGroupBytes / 200, limit: "bytes"},
	}
	srv := natstest.Start(t)
	_, anchor, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := edgepub.OpenPublisher(natstest.Context(t), srv.JS, edgepub.Options{Bucket: "edge", Lifetime: 2 * time.Hour, Anchor: anchor})
	if err != nil {
		t.Fatal(err)
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			var logs bytes.Buffer
			m := admin.NewMetrics(nil)
			e := newEnv(t, func(o *Options) {
				o.Edge, o.Metrics, o.Logger = pub, m, slog.New(slog.NewTextHandler(&logs, nil))
			})
			e.idp.set(func(p *testIdP) { p.idClaims["groups"] = manyGroups("login", c.n, c.size) })
			e.loggedIn(t)
			s := e.store.All()[0]
			if len(s.Groups) != c.want {
				t.Fatalf("login stored %d groups, want %d", len(s.Groups), c.want)
			}
			// Capped, but not silently: a warning and a metric.
			if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "groups over edgepass's limits") ||
				!strings.Contains(logs.String(), fmt.Sprintf("dropped=%d", c.n-c.want)) {
				t.Errorf("no warning naming the dropped groups: %s", logs.String())
			}
			if want := fmt.Sprintf(`edgepass_groups_capped_total{limit=%q} 1`, c.limit); !strings.Contains(scrape(m), want) {
				t.Errorf("metrics lack %s", want)
			}
			// Changed groups at refresh are published to the real edge bucket.
			e.idp.set(func(p *testIdP) { p.refreshClaims = map[string]any{"groups": manyGroups("refresh", c.n, c.size)} })
			if err := e.h.RefreshOnce(context.Background()); err != nil {
				t.Fatalf("refresh of a user with %d groups: %v", c.n, err)
			}
			s = e.store.All()[0]
			if len(s.Groups) != c.want || !strings.HasPrefix(s.Groups[0], "refresh-") {
				t.Fatalf("refresh stored %d groups (first %q), want %d refreshed ones", len(s.Groups), s.Groups[0], c.want)
			}
			if got := e.edge.revokedSIDs(); len(got) != 0 {
				t.Fatalf("session revoked: %v", got)
			}
			if want := fmt.Sprintf(`edgepass_groups_capped_total{limit=%q} 2`, c.limit); !strings.Contains(scrape(m), want) {
				t.Errorf("refresh: metrics lack %s", want)
			}
		})
	}
}

// scrape returns the registry's metrics in the Prometheus text format.
func scrape(m *admin.Metrics) string {
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	return rec.Body.String()
}

// Group names over MaxGroupName are dropped, not silently either.
func TestOverlongGroupNamesAreDroppedWithAWarning(t *testing.T) {
	e := newEnv(t, nil)
	long := strings.Repeat("g", edgepub.MaxGroupName+1)
	e.idp.set(func(p *testIdP) { p.idClaims["groups"] = []any{"staff", long} })
	e.loggedIn(t)
	if s := e.store.All()[0]; len(s.Groups) != 1 || s.Groups[0] != "staff" {
		t.Fatalf("groups %v, want [staff]", s.Groups)
	}
	if e.metrics.capped["name"] != 1 {
		t.Errorf("capped metric %v, want name=1", e.metrics.capped)
	}
}
