// Package admin is the daemon's admin HTTP API, served on its own listener:
// sessions, user revocation, group overrides, key listing, rotation and
// revocation, edge sync state (bearer-token protected under /api/), plus
// /healthz, /readyz and /metrics.
package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/edgepass/edgepass/daemon/edgepub"
	"github.com/edgepass/edgepass/daemon/events"
	"github.com/edgepass/edgepass/daemon/keys"
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
// with PUT, enabling DELETE /api/v1/users/{user}/groups.
type GroupClearer interface {
	ClearGroups(ctx context.Context, subject string) error
}

// KeyRing is the signing key ring as the admin API manages it;
// *keys.Ring implements it.
type KeyRing interface {
	// Rotate makes a new signing key current and returns its kid.
	Rotate(ctx context.Context) (kid string, err error)
	// Revoke distrusts kid at every edge (keys.ErrUnknownKey if no such key).
	Revoke(ctx context.Context, kid string) (keys.RevokeResult, error)
	// Keys describes every key (no private material).
	Keys() []keys.KeyInfo
	// KeyID is the signing key's kid.
	KeyID() string
	// Anchor is the trust anchor edges are configured with (trustAnchors).
	Anchor() string
	// AnchorID is the trust anchor's key id.
	AnchorID() string
	// Horizon is the longest token lifetime edges accept now.
	Horizon() time.Duration
}

// EdgeLister reports the latest heartbeat of every edge replica;
// *edgepub.Heartbeats implements it.
type EdgeLister interface {
	// List returns the replicas sorted by edge name, then replica id.
	List() []EdgeStatus
}

// Pinger reports a dependency's state now (JetStream, the IdP).
type Pinger interface {
	Ping(ctx context.Context) error
}

// Names of the readiness checks serve configures; each has a metric
// edgepass_<name>_up.
const (
	CheckJetStream = "jetstream"
	CheckIdP       = "idp"
)

// Check is one dependency /readyz reports on. /readyz means "this replica
// can issue and revoke sessions".
type Check struct {
	// Name keys the check in /readyz's body (CheckJetStream, CheckIdP).
	Name string
	// Probe reports the dependency's state now; it runs at most once per
	// Options.CheckCache, bounded by Options.CheckTimeout.
	Probe Pinger
	// Once, when set, makes readiness need the dependency to have worked
	// once rather than now: the IdP is needed to start signing users in,
	// while /verify and revocation keep working through an IdP outage, so
	// dropping out of the Service then would only take /verify down too.
	Once func() bool
	// Down is the public reason shown while Probe fails, and Pending while
	// Once reports false; the probe's error goes to the log only.
	Down, Pending string
}

// EdgeStatus is an edge replica's latest heartbeat (docs/contracts.md,
// "Heartbeat") as the daemon received it, with whether it is stale and how
// far behind the edge bucket it is.
type EdgeStatus = edgepub.EdgeStatus

// Options configures the admin API. A token (Token or Tokens), Store, Edge,
// Keys and Edges are required.
type Options struct {
	// Token is the read-write bearer token named "admin" (admin.token).
	Token string
	// Tokens are more named tokens (admin.tokens), read-write or read-only;
	// every /api/ request carries one of these or Token.
	Tokens []Token
	// Audit records every change with its actor (the token's name, or the
	// console's administrator); nil records nothing.
	Audit events.Recorder
	// Events serves GET /api/v1/events; nil answers 404 there.
	Events events.Querier
	// Overrides serves GET /api/v1/groups (the administrators' group
	// overrides in force); nil answers 404 there.
	Overrides OverrideLister
	Store     SessionStore
	Edge      EdgePublisher
	Keys      KeyRing
	Edges     EdgeLister
	// ServiceTokens serves /api/v1/service-tokens; nil answers 404 there.
	ServiceTokens ServiceTokens
	// Checks are what /readyz reports on (see Check).
	Checks []Check
	// Metrics is served at /metrics; nil creates one without a sessions gauge.
	Metrics *Metrics
	Logger  *slog.Logger
	// CheckTimeout bounds each readiness probe (default 3 s).
	CheckTimeout time.Duration
	// CheckCache is how long probe results are reused (default 3 s), so
	// frequent readiness probes do not hammer NATS or the IdP.
	CheckCache time.Duration
}

// Handler is the admin listener's http.Handler.
type Handler struct {
	opts   Options
	log    *slog.Logger
	tokens []tokenEntry
	// api is the /api/ mux without authentication: Internal serves it to
	// the console, which authenticates people itself.
	api *http.ServeMux
	mux *http.ServeMux
	now func() time.Time

	// readyMu guards the cached readiness and serializes probe runs.
	readyMu   sync.Mutex
	readiness *Readiness
	checkedAt time.Time
	failing   map[string]bool // last state per check, to log changes once
}

// New checks opts and builds the handler with its own mux.
func New(opts Options) (*Handler, error) {
	var errs []error
	if opts.Token == "" && len(opts.Tokens) == 0 {
		errs = append(errs, errors.New("admin.token (or admin.tokenFile, or admin.tokens) is required"))
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
	if opts.CheckCache <= 0 {
		opts.CheckCache = 3 * time.Second
	}
	if opts.Audit == nil {
		opts.Audit = events.Discard
	}
	tokens, err := hashTokens(opts.Token, opts.Tokens, opts.Logger)
	if err != nil {
		return nil, err
	}
	h := &Handler{opts: opts, log: opts.Logger, tokens: tokens, now: time.Now, failing: map[string]bool{}}
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
	route("/api/v1/users/{user}/revoke", map[string]http.HandlerFunc{"POST": h.revokeUser})
	groups := map[string]http.HandlerFunc{"PUT": h.setGroups}
	if _, ok := h.opts.Edge.(GroupClearer); ok {
		groups["DELETE"] = h.clearGroups
	}
	route("/api/v1/users/{user}/groups", groups)
	route("/api/v1/keys", map[string]http.HandlerFunc{"GET": h.listKeys})
	route("/api/v1/keys/rotate", map[string]http.HandlerFunc{"POST": h.rotateKeys})
	route("/api/v1/keys/{kid}/revoke", map[string]http.HandlerFunc{"POST": h.revokeKey})
	route("/api/v1/edges", map[string]http.HandlerFunc{"GET": h.edges})
	if h.opts.Events != nil {
		route("/api/v1/events", map[string]http.HandlerFunc{"GET": h.listEvents})
	}
	if h.opts.Overrides != nil {
		route("/api/v1/groups", map[string]http.HandlerFunc{"GET": h.listOverrides})
	}
	h.serviceTokenRoutes(route)
	api.HandleFunc("/", notFound)
	h.api = api

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

// authenticate is in tokens.go.

// CheckState is one check in /readyz's answer.
type CheckState struct {
	// State is "ok" or "failing": the dependency now.
	State string `json:"state"`
	// Ready reports whether this check lets the replica be ready (a Check
	// with Once may be failing and ready).
	Ready bool `json:"ready"`
	// Reason says why it is failing or not ready, without internal detail.
	Reason string `json:"reason,omitempty"`
}

// Readiness is the answer of GET /readyz: 200 when every check is ready,
// else 503.
type Readiness struct {
	Status    string                `json:"status"` // "ready" or "not ready"
	Checks    map[string]CheckState `json:"checks"`
	CheckedAt time.Time             `json:"checkedAt"`
}

// ready serves GET /readyz from the cached check results; details of a
// failure go to the log, not to the unauthenticated caller.
func (h *Handler) ready(w http.ResponseWriter, r *http.Request) {
	res := h.Readiness(r.Context())
	code := http.StatusOK
	if res.Status != "ready" {
		code = http.StatusServiceUnavailable
	}
	writeJSON(w, code, res)
}

// Readiness runs the checks, or returns their results when younger than
// CheckCache, and updates edgepass_ready and edgepass_<check>_up.
func (h *Handler) Readiness(ctx context.Context) Readiness {
	h.readyMu.Lock()
	defer h.readyMu.Unlock()
	if h.readiness != nil && h.now().Sub(h.checkedAt) < h.opts.CheckCache {
		return *h.readiness
	}
	errs := h.probe(ctx)
	res := Readiness{Status: "ready", Checks: map[string]CheckState{}, CheckedAt: h.now().UTC()}
	for i, c := range h.opts.Checks {
		err := errs[i]
		st := CheckState{State: "ok", Ready: err == nil}
		if err != nil {
			st.State, st.Reason = "failing", c.Down
			if st.Reason == "" {
				st.Reason = c.Name + " check failing; see the daemon log"
			}
		}
		if c.Once != nil {
			if st.Ready = c.Once(); !st.Ready && c.Pending != "" {
				st.Reason = c.Pending
			}
		}
		if !st.Ready {
			res.Status = "not ready"
		}
		res.Checks[c.Name] = st
		h.opts.Metrics.setUp(c.Name, err == nil)
		if was := h.failing[c.Name]; err != nil && !was {
			h.log.Warn("readiness check failing", "check", c.Name, "ready", st.Ready, "err", err)
		} else if err == nil && was {
			h.log.Info("readiness check ok again", "check", c.Name)
		}
		h.failing[c.Name] = err != nil
	}
	h.opts.Metrics.setReady(res.Status == "ready")
	h.readiness, h.checkedAt = &res, h.now()
	return res
}

// probe runs every check's probe concurrently, each bounded by
// CheckTimeout; one that does not return in time counts as failing.
func (h *Handler) probe(ctx context.Context) []error {
	errs := make([]error, len(h.opts.Checks))
	type result struct {
		i   int
		err error
	}
	ch := make(chan result, len(h.opts.Checks))
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), h.opts.CheckTimeout)
	defer cancel()
	for i, c := range h.opts.Checks {
		go func() { ch <- result{i, c.Probe.Ping(ctx)} }()
	}
	for range h.opts.Checks {
		select {
		case res := <-ch:
			errs[res.i] = res.err
		case <-ctx.Done():
			for i := range errs {
				if errs[i] == nil {
					errs[i] = fmt.Errorf("no answer within %s", h.opts.CheckTimeout)
				}
			}
			// Probes still running report into the buffered channel, unread.
			return errs
		}
	}
	return errs
}

// RunChecks refreshes the readiness results and metrics every interval
// until ctx ends, so edgepass_idp_up and edgepass_ready stay current
// without anyone calling /readyz.
func (h *Handler) RunChecks(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		h.Readiness(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false) // JSON with nosniff, never HTML: keep "<sub>" readable
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
