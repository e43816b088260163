package admin

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// edgeCollector exports every edge replica's latest heartbeat at scrape
// time: whether it is synced, how far behind the edge bucket it is, how long
// ago it reported, and the facts it refused — the numbers an operator alerts
// on when an edge stops following revocations.
type edgeCollector struct {
	edges    EdgeLister
	now      func() time.Time
	synced   *prometheus.Desc
	behind   *prometheus.Desc
	age      *prometheus.Desc
	rejected *prometheus.Desc
	stale    *prometheus.Desc
	refusals *prometheus.Desc
}

// WatchEdges exports edge sync metrics read from edges at every scrape:
// edgepass_edge_synced, edgepass_edge_behind_messages,
// edgepass_edge_heartbeat_age_seconds, edgepass_edge_rejected_facts,
// edgepass_edge_stale, labelled by edge and replica, and
// edgepass_edge_refusals_total by edge, replica and reason.
func (m *Metrics) WatchEdges(edges EdgeLister) {
	if m == nil || edges == nil {
		return
	}
	labels := []string{"edge", "replica"}
	m.reg.MustRegister(&edgeCollector{
		edges:    edges,
		now:      time.Now,
		synced:   prometheus.NewDesc("edgepass_edge_synced", "1 when the edge replica reports it has replayed the edge bucket up to date.", labels, nil),
		behind:   prometheus.NewDesc("edgepass_edge_behind_messages", "Edge-bucket messages the replica had not applied at its last heartbeat, against what this daemon has seen.", labels, nil),
		age:      prometheus.NewDesc("edgepass_edge_heartbeat_age_seconds", "Seconds since this daemon received the replica's last heartbeat (every 5 s when healthy).", labels, nil),
		rejected: prometheus.NewDesc("edgepass_edge_rejected_facts", "Edge facts the replica refused (unsigned, malformed, deletes), as it last reported.", labels, nil),
		stale:    prometheus.NewDesc("edgepass_edge_stale", "1 when the replica missed three heartbeats.", labels, nil),
		refusals: prometheus.NewDesc("edgepass_edge_refusals_total", "Requests the replica refused since it started, by reason, as it last reported.", append(labels, "reason"), nil),
	})
}

func (c *edgeCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.synced
	ch <- c.behind
	ch <- c.age
	ch <- c.rejected
	ch <- c.stale
	ch <- c.refusals
}

func (c *edgeCollector) Collect(ch chan<- prometheus.Metric) {
	now := c.now()
	for _, e := range c.edges.List() {
		lv := []string{e.Edge, e.Replica}
		ch <- prometheus.MustNewConstMetric(c.synced, prometheus.GaugeValue, b2f(e.Synced), lv...)
		ch <- prometheus.MustNewConstMetric(c.behind, prometheus.GaugeValue, float64(e.Behind), lv...)
		ch <- prometheus.MustNewConstMetric(c.age, prometheus.GaugeValue, now.Sub(e.Received).Seconds(), lv...)
		ch <- prometheus.MustNewConstMetric(c.rejected, prometheus.GaugeValue, float64(e.Rejected), lv...)
		ch <- prometheus.MustNewConstMetric(c.stale, prometheus.GaugeValue, b2f(e.Stale), lv...)
		for reason, n := range e.Refusals {
			ch <- prometheus.MustNewConstMetric(c.refusals, prometheus.CounterValue, float64(n), e.Edge, e.Replica, reason)
		}
	}
}
