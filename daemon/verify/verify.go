// Package verify is the daemon's ForwardAuth endpoint (GET /verify) for edges
// that cannot load the plugin. It makes the plugin's decision — package
// policy, shared with the plugin: signature, issuer, audience, times, the
// lifetime bound, revocations, group overrides, the route's rules, identity
// header names and values, navigation versus API — and answers with identity
// headers, a 401 that says why, a 403, or a redirect to login.
package verify

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/edgepass/edgepass/daemon/returnurl"
	"github.com/edgepass/edgepass/plugin/policy"
	"github.com/edgepass/edgepass/plugin/suggest"
	"github.com/edgepass/edgepass/plugin/token"
)

// Identity headers /verify answers with when the route names none
// (Traefik copies them to the backend request when they match
// authResponseHeadersRegex).
const (
	HeaderUser   = "X-Auth-User"
	HeaderEmail  = "X-Auth-Email"
	HeaderGroups = "X-Auth-Groups"
	HeaderName   = "X-Auth-Name"
)

// cacheSize is how many verified tokens are remembered, so a token costs
// one signature check, not one per request.
const cacheSize = 10000

// policyCacheSize bounds the compiled route settings kept (one per distinct
// /verify query, i.e. per ForwardAuth middleware).
const policyCacheSize = 256

// maxCandidates bounds the tokens tried per request (each costs a signature
// check): a request stuffed with cookies cannot make the daemon do more.
const maxCandidates = 4

// KeySource is the daemon's key ring (*keys.Ring): /verify accepts exactly
// the tokens it issued.
type KeySource interface {
	PublicKeys() *token.KeySet
	// Verifier checks the issuer, audience and clock skew of its tokens.
	Verifier() *token.Verifier
}

// EdgeState is the part of edgestate.State the decision consults
// (policy.State).
type EdgeState = policy.State

// Options configures the handler.
type Options struct {
	// PublicURL is the daemon's base URL, where /login lives.
	PublicURL  string
	CookieName string
	Keys       KeySource // required
	State      EdgeState // required
	// AllowedDomains (session.allowedDomains) are the hosts the rd built
	// from X-Forwarded-* may name; any other host gets a login without rd.
	AllowedDomains []string
	// Observe, if set, receives each outcome: "ok", "unauthenticated",
	// "revoked", "forbidden", "misconfigured" (see Outcome).
	Observe func(outcome string)
	Logger  *slog.Logger
	Now     func() time.Time
}

// verified is a cache entry: the claims of a token that passed Verify
// against keys (a key set change invalidates it).
type verified struct {
	claims token.Claims
	keys   *token.KeySet
}

// Handler answers ForwardAuth requests.
type Handler struct {
	o        Options
	verifier *token.Verifier
	loginURL string
	returnTo *returnurl.Policy
	cache    *lru.Cache[string, verified]
	policies *lru.Cache[string, *policy.Policy]
}

// New checks the options and returns the handler.
func New(o Options) (*Handler, error) {
	if o.Keys == nil || o.State == nil {
		return nil, errors.New("verify: Keys and State are required")
	}
	if o.PublicURL == "" {
		return nil, errors.New("verify: PublicURL is required")
	}
	if o.CookieName == "" {
		o.CookieName = policy.DefaultCookieName
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	returnTo, err := returnurl.New(o.AllowedDomains)
	if err != nil {
		return nil, fmt.Errorf("verify: session.allowedDomains: %w", err)
	}
	base := strings.TrimRight(o.PublicURL, "/")
	h := &Handler{
		returnTo: returnTo,
		o:        o,
		verifier: o.Keys.Verifier(),
		loginURL: base + "/login",
	}
	c, err := lru.New[string, verified](cacheSize)
	if err != nil {
		return nil, fmt.Errorf("verify: cache: %w", err)
	}
	h.cache = c
	if h.policies, err = lru.New[string, *policy.Policy](policyCacheSize); err != nil {
		return nil, fmt.Errorf("verify: cache: %w", err)
	}
	return h, nil
}

// ServeHTTP implements GET /verify. Query parameters configure the route
// with the plugin's settings: allowedGroups, allowedUsers,
// allowedEmailDomains (comma-separated; any match admits), userHeader,
// emailHeader, groupsHeader, nameHeader, subjectHeader, groupsSeparator and
// stripHeaders. Without any *Header parameter the identity headers are
// X-Auth-User, X-Auth-Email, X-Auth-Groups and X-Auth-Name. An unknown
// parameter fails closed: 500, and the log names it.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hdr := w.Header()
	hdr.Set("Cache-Control", "no-store")
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		hdr.Set("Allow", "GET, HEAD")
		writeJSON(w, http.StatusMethodNotAllowed, "method not allowed")
		return
	}
	pol, err := h.routePolicy(r.URL.RawQuery)
	if err != nil {
		h.o.Logger.Error("verify: the ForwardAuth address's settings are wrong; refusing every request until they are fixed", "err", err)
		h.observe("misconfigured")
		writeJSON(w, http.StatusInternalServerError, "edgepass /verify is misconfigured; see the daemon's log")
		return
	}
	now := h.o.Now()
	c, reason := h.authenticate(r, now)
	var d policy.Decision
	if c != nil {
		d = pol.Decide(c, token.SubjectKey(c.Subject), h.o.State, now)
		reason = d.Reason
	}
	h.observe(Outcome(reason))
	switch {
	case reason == policy.NotAllowed:
		writeJSON(w, http.StatusForbidden, "forbidden")
		return
	case reason != "":
		h.o.Logger.Debug("verify: refused", "reason", reason)
		h.unauthenticated(w, r, reason)
		return
	}
	for i, name := range d.Names {
		hdr.Set(name, d.Values[i])
	}
	w.WriteHeader(http.StatusOK)
}

// Outcomes lists every Outcome (and "misconfigured"), for metrics whose
// series start at zero.
var Outcomes = []string{"ok", "unauthenticated", "revoked", "forbidden", "misconfigured"}

// Outcome is the metric label of a reason code: a small fixed set.
func Outcome(reason string) string {
	switch reason {
	case "":
		return "ok"
	case policy.NotAllowed:
		return "forbidden"
	case policy.SessionRevoked, policy.UserRevoked, policy.TooLong:
		return "revoked"
	}
	return "unauthenticated"
}

// verifyParams are the query parameters /verify understands (the plugin's
// route settings).
var verifyParams = []string{
	"allowedGroups", "allowedUsers", "allowedEmailDomains", "userHeader", "emailHeader",
	"groupsHeader", "nameHeader", "subjectHeader", "groupsSeparator", "stripHeaders",
}

// routePolicy compiles the route settings of a /verify query, once per distinct
// query.
func (h *Handler) routePolicy(rawQuery string) (*policy.Policy, error) {
	if p, ok := h.policies.Get(rawQuery); ok {
		return p, nil
	}
	q, err := url.ParseQuery(rawQuery)
	if err != nil {
		return nil, fmt.Errorf("query %q: %w", rawQuery, err)
	}
	var unknown []string
	for k := range q {
		known := false
		for _, p := range verifyParams {
			if k == p {
				known = true
			}
		}
		if !known {
			msg := fmt.Sprintf("unknown setting %q", k)
			if near := suggest.Closest(k, verifyParams, 3); near != "" {
				msg += fmt.Sprintf("; did you mean %q?", near)
			}
			unknown = append(unknown, msg)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return nil, errors.New(strings.Join(unknown, "; "))
	}
	rules := policy.Rules{
		AllowedGroups: q["allowedGroups"], AllowedUsers: q["allowedUsers"], AllowedEmailDomains: q["allowedEmailDomains"],
		UserHeader: q.Get("userHeader"), EmailHeader: q.Get("emailHeader"), GroupsHeader: q.Get("groupsHeader"),
		NameHeader: q.Get("nameHeader"), SubjectHeader: q.Get("subjectHeader"),
		GroupsSeparator: q.Get("groupsSeparator"), StripHeaders: q["stripHeaders"],
	}
	if !q.Has("userHeader") && !q.Has("emailHeader") && !q.Has("groupsHeader") && !q.Has("nameHeader") && !q.Has("subjectHeader") {
		rules.UserHeader, rules.EmailHeader, rules.GroupsHeader, rules.NameHeader = HeaderUser, HeaderEmail, HeaderGroups, HeaderName
	}
	p, err := policy.Compile(rules)
	if err != nil {
		return nil, err
	}
	h.policies.Add(rawQuery, p)
	return p, nil
}

// Identify returns the verified claims of the request's session token,
// refused when the edge state refuses it (revoked, too long), groups
// overridden, for the status page.
func (h *Handler) Identify(r *http.Request) (*token.Claims, bool) {
	now := h.o.Now()
	c, _ := h.authenticate(r, now)
	if c == nil {
		return nil, false
	}
	sk := token.SubjectKey(c.Subject)
	switch {
	case h.o.State.SessionRevoked(c.SessionID, now), h.o.State.UserRevoked(sk, c.IssuedAt, now), h.o.State.TooLong(c.IssuedAt, c.Expiry):
		return nil, false
	}
	if g, ok := h.o.State.GroupsOverride(sk, c.IssuedAt); ok {
		c.Groups = append([]string(nil), g...)
	}
	return c, true
}

// authenticate returns the verified claims of the first candidate token
// that the edge state does not refuse, else nil and the reason of the last
// refusal (policy reason codes).
func (h *Handler) authenticate(r *http.Request, now time.Time) (*token.Claims, string) {
	reason := policy.NoToken
	keys := h.o.Keys.PublicKeys()
	for _, raw := range h.candidates(r) {
		c, err := h.check(raw, keys, now)
		if err != nil {
			h.o.Logger.Debug("verify: token refused", "err", err)
			reason = policy.TokenReason(err)
			continue
		}
		if c.SessionID == "" {
			reason = policy.BadToken
			continue
		}
		sk := token.SubjectKey(c.Subject)
		switch {
		case h.o.State.SessionRevoked(c.SessionID, now):
			reason = policy.SessionRevoked
			continue
		case h.o.State.UserRevoked(sk, c.IssuedAt, now):
			reason = policy.UserRevoked
			continue
		case h.o.State.TooLong(c.IssuedAt, c.Expiry):
			reason = policy.TooLong
			continue
		}
		return c, ""
	}
	return nil, reason
}

// check verifies raw, or finds it in the cache of tokens already verified
// against the same keys and not expired yet. It returns a copy the caller may
// change.
func (h *Handler) check(raw string, keys *token.KeySet, now time.Time) (*token.Claims, error) {
	if e, ok := h.cache.Get(raw); ok && e.keys == keys {
		if now.Unix() < e.claims.Expiry+int64(h.verifier.Skew/time.Second) {
			c := e.claims
			return &c, nil
		}
		h.cache.Remove(raw)
	}
	c, err := h.verifier.Verify(raw, keys, now)
	if err != nil {
		return nil, err
	}
	h.cache.Add(raw, verified{claims: *c, keys: keys})
	return c, nil
}

// candidates are the session cookie values ("__Host-" name first, as the
// plugin reads them), then a Bearer token, at most maxCandidates.
func (h *Handler) candidates(r *http.Request) []string {
	var out []string
	for _, name := range []string{policy.HostCookieName(h.o.CookieName), h.o.CookieName} {
		for _, ck := range r.CookiesNamed(name) {
			if len(out) == maxCandidates {
				return out
			}
			if ck.Value != "" {
				out = append(out, ck.Value)
			}
		}
	}
	if tok := token.Bearer(r.Header.Get("Authorization")); len(out) < maxCandidates && tok != "" {
		out = append(out, tok)
	}
	return out
}

// unauthenticated sends browsers to login and answers everything else 401,
// saying why in WWW-Authenticate (policy.Challenge, as the plugin does).
func (h *Handler) unauthenticated(w http.ResponseWriter, r *http.Request, reason string) {
	method := r.Header.Get("X-Forwarded-Method")
	if method == "" {
		method = r.Method
	}
	if policy.IsNavigation(method, r.Header) {
		target := h.loginURL
		if rd := h.returnURL(r); rd != "" {
			target += "?rd=" + url.QueryEscape(rd)
		}
		w.Header().Set("Location", target)
		w.WriteHeader(http.StatusFound)
		return
	}
	w.Header().Set("WWW-Authenticate", policy.Challenge(reason))
	writeJSON(w, http.StatusUnauthorized, "authentication required")
}

// returnURL rebuilds the original URL from X-Forwarded-Proto/Host/Uri, or
// "" when it is malformed or points at a host logins may not return to
// (client-controlled headers are trusted for nothing else).
func (h *Handler) returnURL(r *http.Request) string {
	proto := strings.ToLower(r.Header.Get("X-Forwarded-Proto"))
	host := r.Header.Get("X-Forwarded-Host")
	uri := r.Header.Get("X-Forwarded-Uri")
	if proto != "http" && proto != "https" {
		return ""
	}
	if host == "" || strings.ContainsAny(host, "/\\@?#% \t\r\n,") {
		return ""
	}
	if uri == "" {
		uri = "/"
	}
	if uri[0] != '/' || strings.HasPrefix(uri, "//") || strings.ContainsAny(uri, "\\\r\n\t ") {
		return ""
	}
	checked, ok := h.returnTo.Check(proto + "://" + host + uri)
	if !ok {
		return ""
	}
	return checked
}

func (h *Handler) observe(outcome string) {
	if h.o.Observe != nil {
		h.o.Observe(outcome)
	}
}

func writeJSON(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(`{"error":"` + msg + `"}` + "\n"))
}
