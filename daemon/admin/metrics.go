package admin

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Revocation kinds counted by the admin API; oidcflow adds logout,
// backchannel and refresh.
const (
	KindAdminSession = "admin_session"
	KindAdminUser    = "admin_user"
)

// Metrics is the daemon's Prometheus registry, shared by the core, oidcflow
// (it implements oidcflow.Metrics) and the admin API. A nil *Metrics is
// valid and records nothing.
type Metrics struct {
	reg         *prometheus.Registry
	logins      prometheus.Counter
	failures    *prometheus.CounterVec
	revocations *prometheus.CounterVec
	publish     prometheus.Histogram
	verify      *prometheus.CounterVec
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
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edgepass_login_failures_total",
			Help: "Refused or failed logins, by reason.",
		}, []string{"reason"}),
		revocations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edgepass_revocations_total",
			Help: "Revoked sessions and users, by source (logout, backchannel, refresh, admin_session, admin_user).",
		}, []string{"kind"}),
		publish: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "edgepass_publish_seconds",
			Help:    "Time to publish one edge fact to NATS.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}),
	}
	m.verify = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "edgepass_verify_total",
		Help: "Answers of the ForwardAuth endpoint /verify, by outcome (ok, unauthenticated, revoked, forbidden).",
	}, []string{"outcome"})
	m.reg.MustRegister(m.logins, m.failures, m.revocations, m.publish, m.verify,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if sessionCount != nil {
		m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "edgepass_sessions",
			Help: "Live sessions in the session store.",
		}, func() float64 { return float64(sessionCount()) }))
	}
	return m
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

// Handler serves the registry in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}
