package serve

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/edgepass/edgepass/daemon/admin"
)

// swapHandler serves whatever handler was set last: the listeners answer
// from the start, and New swaps in the real handlers once built.
type swapHandler struct{ h atomic.Pointer[http.Handler] }

func (s *swapHandler) set(h http.Handler) { s.h.Store(&h) }

func (s *swapHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	(*s.h.Load()).ServeHTTP(w, r)
}

// startingState is why the daemon is not serving yet.
type startingState struct {
	mu     sync.Mutex
	reason string
	since  time.Time
}

func (st *startingState) set(reason string) {
	st.mu.Lock()
	if st.since.IsZero() {
		st.since = time.Now()
	}
	st.reason = reason
	st.mu.Unlock()
}

func (st *startingState) get() (string, time.Time) {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.reason, st.since
}

// adminHandler is the admin listener while starting: alive (/healthz), not
// ready with the reason (/readyz), metrics; everything else 503.
func (st *startingState) adminHandler(m *admin.Metrics) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeStarting(w, http.StatusOK, map[string]any{"status": "starting"})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		reason, since := st.get()
		writeStarting(w, http.StatusServiceUnavailable, map[string]any{
			"status": "not ready",
			"checks": map[string]any{"start": map[string]any{"state": "starting", "ready": false, "reason": reason}},
			"since":  since.UTC().Format(time.RFC3339),
		})
	})
	mux.Handle("GET /metrics", m.Handler())
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		st.unavailable(w)
	})
	return mux
}

// publicHandler is the browser listener while starting.
func (st *startingState) publicHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeStarting(w, http.StatusOK, map[string]any{"status": "starting"})
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		st.unavailable(w)
	})
	return mux
}

func (st *startingState) unavailable(w http.ResponseWriter) {
	w.Header().Set("Retry-After", "5")
	writeStarting(w, http.StatusServiceUnavailable, map[string]any{"error": "edgepass is starting; try again in a few seconds"})
}

func writeStarting(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// waitable reports a start-up failure that waiting can cure: NATS not
// reachable yet, JetStream not up or its cluster not formed (no meta leader,
// too few peers for the buckets' replicas). A refused credential, a bad
// configuration or a local problem (data directory, encryption key) is not:
// the daemon exits and says why.
func waitable(err error) bool {
	if errors.Is(err, nats.ErrAuthorization) || errors.Is(err, nats.ErrAuthExpired) || errors.Is(err, nats.ErrPermissionViolation) {
		return false
	}
	if errors.Is(err, nats.ErrNoServers) || errors.Is(err, nats.ErrTimeout) || errors.Is(err, nats.ErrNoResponders) ||
		errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, jetstream.ErrJetStreamNotEnabled) ||
		errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount) || errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, syscall.ECONNRESET) {
		return true
	}
	msg := strings.ToLower(err.Error())
	for _, m := range []string{
		"connection refused", "no servers available", "i/o timeout", "context deadline exceeded",
		"jetstream system temporarily unavailable", "insufficient resources", "no suitable peers",
		"jetstream cluster not assigned", "does not answer", "no such host",
	} {
		if strings.Contains(msg, m) && !strings.Contains(msg, "authorization") {
			return true
		}
	}
	return false
}

// startBackoff is the wait before start attempt n+1: 1 s doubling to 15 s.
func startBackoff(attempt int) time.Duration {
	d := time.Second
	for i := 1; i < attempt && d < 15*time.Second; i++ {
		d *= 2
	}
	if d > 15*time.Second {
		d = 15 * time.Second
	}
	return d
}
