// Package admin is the daemon's admin HTTP API, served on its own listener:
// sessions, user revocation, group overrides, key rotation, edge sync state
// (bearer-token protected under /api/), plus /healthz, /readyz and /metrics.
package admin

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/edgepass/edgepass/daemon/edgepub"
	"github.com/edgepass/edgepass/daemon/session"
)

// SessionStore is the part of the session store the admin API uses;
// *session.Store implements it.
type SessionStore interface {
	// Get returns the session and its revision, or session.ErrNotFound.
	Get(ctx context.Context, id string) (*session.Session, uint64, error)
	// Delete removes the session; deleting a missing session is not an error.
	Delete(ctx context.Context, id string) error
	// List returns the live sessions, oldest first (issuedAt, then id);
	// subject != "" keeps only that user's.
	List(ctx context.Context, subject string) ([]session.Session, error)
}

// EdgePublisher pushes facts to every Traefik replica (the edge KV bucket).
type EdgePublisher interface {
	// RevokeSession refuses tokens with this sid until exp.
	RevokeSession(ctx context.Context, sid string, exp time.Time) error
	// RevokeUser refuses the subject's tokens issued at or before before.
	RevokeUser(ctx context.Context, subject string, before time.Time) error
	// SetGroups replaces the subject's groups in tokens issued until now.
	SetGroups(ctx context.Context, subject string, groups []string) error
}

// GroupClearer is optional on Options.Edge: it lifts a group override set
// with PUT, enabling DELETE /api/v1/users/{sub}/groups.
type GroupClearer interface {
	ClearGroups(ctx context.Context, subject string) error
}

// KeyRotator makes a new signing key current and publishes the JWKS.
type KeyRotator interface {
	// Rotate returns the new key's kid.
	Rotate(ctx context.Context) (kid string, err error)
}

// EdgeLister reports the latest heartbeat of every edge replica;
// *edgepub.Heartbeats implements it.
type EdgeLister interface {
	// List returns the replicas sorted by replica id.
	List() []EdgeStatus
}

// Pinger is one readiness check (NATS, IdP discovery).
type Pinger interface {
	Ping(ctx context.Context) error
}

// EdgeStatus is an edge replica's latest heartbeat (docs/contracts.md,
// "Heartbeat") as the daemon received it, with whether it is stale and how
// far behind the edge bucket it is.
type EdgeStatus = edgepub.EdgeStatus

// Options configures the admin API. Token, Store, Edge, Keys and Edges are
// required.
type Options struct {
	// Token is the bearer token every /api/ request must carry (admin.token).
	Token string
	Store SessionStore
	Edge  EdgePublisher
	Keys  KeyRotator
	Edges EdgeLister
	// Checks are run by /readyz, by name (e.g. "nats", "idp").
	Checks map[string]Pinger
	// Metrics is served at /metrics; nil creates one without a sessions gauge.
	Metrics *Metrics
	Logger  *slog.Logger
	// CheckTimeout bounds each readiness check (default 3 s).
	CheckTimeout time.Duration
}

// Handler is the admin listener's http.Handler.
type Handler struct {
	opts      Options
	log       *slog.Logger
	tokenHash [32]byte
	mux       *http.ServeMux
	now       func() time.Time
}

// New checks opts and builds the handler with its own mux.
func New(opts Options) (*Handler, error) {
	var errs []error
	if opts.Token == "" {
		errs = append(errs, errors.New("admin.token (or admin.tokenFile) is required"))
	}
	if opts.Store == nil || opts.Edge == nil || opts.Keys == nil || opts.Edges == nil {
		errs = append(errs, errors.New("Options.Store, Edge, Keys and Edges are required"))
	}
	if len(errs) > 0 {
		return nil, errors.Join(append([]error{errors.New("admin: invalid options")}, errs...)...)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Metrics == nil {
		opts.Metrics = NewMetrics(nil)
	}
	if opts.CheckTimeout <= 0 {
		opts.CheckTimeout = 3 * time.Second
	}
	if len(opts.Token) < 16 {
		opts.Logger.Warn("admin token is shorter than 16 characters; use a long random token")
	}
	h := &Handler{opts: opts, log: opts.Logger, tokenHash: sha256.Sum256([]byte(opts.Token)), now: time.Now}
	h.mux = h.routes()
	return h, nil
}

// ServeHTTP serves the admin listener.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.mux.ServeHTTP(w, r)
}

func (h *Handler) routes() *http.ServeMux {
	api := http.NewServeMux()
	route := func(path string, methods map[string]http.HandlerFunc) {
		allow := make([]string, 0, len(methods))
		for m, f := range methods {
			api.HandleFunc(m+" "+path, f)
			allow = append(allow, m)
		}
		slices.Sort(allow)
		api.HandleFunc(path, methodNotAllowed(allow))
	}
	route("/api/v1/sessions", map[string]http.HandlerFunc{"GET": h.listSessions})
	route("/api/v1/sessions/{sid}", map[string]http.HandlerFunc{"GET": h.getSession, "DELETE": h.deleteSession})
	route("/api/v1/users/{sub}/revoke", map[string]http.HandlerFunc{"POST": h.revokeUser})
	groups := map[string]http.HandlerFunc{"PUT": h.setGroups}
	if _, ok := h.opts.Edge.(GroupClearer); ok {
		groups["DELETE"] = h.clearGroups
	}
	route("/api/v1/users/{sub}/groups", groups)
	route("/api/v1/keys/rotate", map[string]http.HandlerFunc{"POST": h.rotateKeys})
	route("/api/v1/edges", map[string]http.HandlerFunc{"GET": h.edges})
	api.HandleFunc("/", notFound)

	root := http.NewServeMux()
	root.Handle("/api/", h.authenticate(api))
	root.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	root.HandleFunc("/healthz", methodNotAllowed([]string{"GET"}))
	root.HandleFunc("GET /readyz", h.ready)
	root.HandleFunc("/readyz", methodNotAllowed([]string{"GET"}))
	root.Handle("GET /metrics", h.opts.Metrics.Handler())
	root.HandleFunc("/metrics", methodNotAllowed([]string{"GET"}))
	root.HandleFunc("/", notFound)
	return root
}

// authenticate requires "Authorization: Bearer <admin token>", compared in
// constant time (hashes, so the length does not leak either).
func (h *Handler) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		scheme, tok, _ := strings.Cut(r.Header.Get("Authorization"), " ")
		got := sha256.Sum256([]byte(tok))
		if !strings.EqualFold(scheme, "Bearer") || tok == "" || subtle.ConstantTimeCompare(got[:], h.tokenHash[:]) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="edgepass-admin"`)
			writeError(w, http.StatusUnauthorized, "unauthorized: missing or wrong admin bearer token")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// ready runs every check concurrently; details go to the log, not to the
// unauthenticated caller.
func (h *Handler) ready(w http.ResponseWriter, r *http.Request) {
	type result struct {
		name string
		err  error
	}
	ch := make(chan result, len(h.opts.Checks))
	for name, p := range h.opts.Checks {
		go func() {
			ctx, cancel := context.WithTimeout(r.Context(), h.opts.CheckTimeout)
			defer cancel()
			ch <- result{name, p.Ping(ctx)}
		}()
	}
	checks := map[string]string{}
	ok := true
	for range h.opts.Checks {
		res := <-ch
		if res.err != nil {
			ok = false
			checks[res.name] = "failing"
			h.log.Warn("readiness check failing", "check", res.name, "err", res.err)
		} else {
			checks[res.name] = "ok"
		}
	}
	status, code := "ready", http.StatusOK
	if !ok {
		status, code = "not ready", http.StatusServiceUnavailable
	}
	writeJSON(w, code, map[string]any{"status": status, "checks": checks})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}

func notFound(w http.ResponseWriter, r *http.Request) {
	writeError(w, http.StatusNotFound, "not found")
}

func methodNotAllowed(allow []string) http.HandlerFunc {
	a := strings.Join(allow, ", ")
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", a)
		writeError(w, http.StatusMethodNotAllowed, "method "+r.Method+" not allowed; use "+a)
	}
}
