package admin

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/edgepass/edgepass/daemon/version"
)

// Revocation kinds counted by the admin API; oidcflow adds logout,
// backchannel and refresh.
const (
	KindAdminSession = "admin_session"
	KindAdminUser    = "admin_user"
	// KindAdminKey counts sessions ended because the key that signed their
	// token was revoked.
	KindAdminKey = "admin_key"
)

// Metrics is the daemon's Prometheus registry, shared by the core, oidcflow
// (it implements oidcflow.Metrics) and the admin API. A nil *Metrics is
// valid and records nothing.
type Metrics struct {
	reg         *prometheus.Registry
	logins      prometheus.Counter
	failures    *prometheus.CounterVec
	revocations *prometheus.CounterVec
	capped      *prometheus.CounterVec
	publish     prometheus.Histogram
	verify      *prometheus.CounterVec
	refresh     *prometheus.CounterVec
	ready       prometheus.Gauge
	up          map[string]prometheus.Gauge // by check name
}

// NewMetrics builds the registry. sessionCount backs the edgepass_sessions
// gauge (read at scrape time, so it should be cheap, e.g. the session
// bucket's key count); nil leaves the gauge out.
func NewMetrics(sessionCount func() int) *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		logins: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "edgepass_logins_total",
			Help: "Completed browser logins.",
		}),
		failures: counterVec("edgepass_login_failures_total", "reason",
			"Refused or failed logins, by reason."),
		revocations: counterVec("edgepass_revocations_total", "kind",
			"Revoked sessions and users, by source (logout, backchannel, refresh, admin_session, admin_user, admin_key)."),
		capped: counterVec("edgepass_groups_capped_total", "limit",
			"Users' group lists cut to edgepass's limits at login or refresh (edges never see the rest), by limit: count (MaxGroups), bytes (MaxGroupBytes), name (MaxGroupName)."),
		publish: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "edgepass_publish_seconds",
			Help:    "Time to publish one edge fact to NATS.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}),
		verify: counterVec("edgepass_verify_total", "outcome",
			"Answers of the ForwardAuth endpoint /verify, by outcome (ok, unauthenticated, revoked, forbidden)."),
		refresh: counterVec("edgepass_refresh_total", "outcome",
			"Periodic re-checks of sessions at the IdP, by outcome (unchanged, groups_changed, revoked, skipped, error)."),
		ready: gauge("edgepass_ready",
			"1 when /readyz answers ready: this replica can issue and revoke sessions."),
		up: map[string]prometheus.Gauge{
			CheckIdP: gauge("edgepass_idp_up",
				"1 when the IdP answered the last check (its discovery document), refreshed on a timer."),
			CheckJetStream: gauge("edgepass_jetstream_up",
				"1 when the last write and read-back in the daemon's JetStream buckets worked."),
		},
	}
	m.reg.MustRegister(m.ready, m.up[CheckIdP], m.up[CheckJetStream])
	info := version.Get()
	build := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "edgepass_build_info",
		Help: "The daemon's release: always 1, with the version, commit and Go version as labels.",
	}, []string{"version", "commit", "goversion"})
	build.WithLabelValues(info.Version, info.Commit, info.Go).Set(1)
	m.reg.MustRegister(build, m.refresh)
	m.reg.MustRegister(m.logins, m.failures, m.revocations, m.capped, m.publish, m.verify,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if sessionCount != nil {
		m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "edgepass_sessions",
			Help: "Live sessions in the session store.",
		}, func() float64 { return float64(sessionCount()) }))
	}
	return m
}

// counterVec is a counter with one label.
func counterVec(name, label, help string) *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, []string{label})
}

// gauge is a gauge without labels.
func gauge(name, help string) prometheus.Gauge {
	return prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help})
}

// Labels lists every value of the labelled counters, so every series
// exists (at 0) from the first scrape.
type Labels struct {
	LoginFailures, Revocations, VerifyOutcomes, RefreshOutcomes, GroupLimits []string
}

// InitSeries creates every labelled series at zero.
func (m *Metrics) InitSeries(l Labels) {
	if m == nil {
		return
	}
	for _, series := range []struct {
		c      *prometheus.CounterVec
		values []string
	}{
		{m.failures, l.LoginFailures},
		{m.revocations, append(append([]string(nil), l.Revocations...), KindAdminSession, KindAdminUser, KindAdminKey)},
		{m.verify, l.VerifyOutcomes},
		{m.refresh, l.RefreshOutcomes},
		{m.capped, l.GroupLimits},
	} {
		for _, v := range series.values {
			series.c.WithLabelValues(v)
		}
	}
}

// Refreshed counts one session re-check at the IdP by outcome.
func (m *Metrics) Refreshed(outcome string) {
	if m != nil {
		m.refresh.WithLabelValues(outcome).Inc()
	}
}

// LoginSucceeded counts a completed login.
func (m *Metrics) LoginSucceeded() {
	if m != nil {
		m.logins.Inc()
	}
}

// LoginFailed counts a refused login; reason must come from a small fixed set.
func (m *Metrics) LoginFailed(reason string) {
	if m != nil {
		m.failures.WithLabelValues(reason).Inc()
	}
}

// Revoked counts a revocation by its source.
func (m *Metrics) Revoked(kind string) {
	if m != nil {
		m.revocations.WithLabelValues(kind).Inc()
	}
}

// GroupsCapped counts a group list cut to edgepub's limits; limit is one
// of oidcflow's Limit* constants, so a cut that edges would hide shows up.
func (m *Metrics) GroupsCapped(limit string) {
	if m != nil {
		m.capped.WithLabelValues(limit).Inc()
	}
}

// ObservePublish records how long a NATS publish of an edge fact took.
func (m *Metrics) ObservePublish(d time.Duration) {
	if m != nil {
		m.publish.Observe(d.Seconds())
	}
}

// Verified counts one /verify answer; outcome comes from a small fixed set.
func (m *Metrics) Verified(outcome string) {
	if m != nil {
		m.verify.WithLabelValues(outcome).Inc()
	}
}

// setReady records the readiness result (edgepass_ready).
func (m *Metrics) setReady(ok bool) {
	if m != nil {
		m.ready.Set(b2f(ok))
	}
}

// setUp records a check's state (edgepass_<name>_up); other names are
// not exported.
func (m *Metrics) setUp(name string, ok bool) {
	if m != nil && m.up[name] != nil {
		m.up[name].Set(b2f(ok))
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// Handler serves the registry in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}
