// Package verify is the daemon's ForwardAuth endpoint (GET /verify) for edges
// that cannot load the plugin: the same checks the plugin makes (signature,
// issuer, audience, times, revocations, group overrides), answered with
// identity headers, a 401, or a redirect to login.
package verify

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/edgepass/edgepass/daemon/config"
	"github.com/edgepass/edgepass/daemon/returnurl"
	"github.com/edgepass/edgepass/plugin/token"
)

// Identity headers /verify answers with (Traefik copies them to the backend
// request when listed in authResponseHeaders).
const (
	HeaderUser   = "X-Auth-User"
	HeaderEmail  = "X-Auth-Email"
	HeaderGroups = "X-Auth-Groups"
	HeaderName   = "X-Auth-Name"
)

// cacheSize is how many verified tokens are remembered, so a token costs
// one signature check, not one per request.
const cacheSize = 10000

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

// EdgeState is the part of edgestate.State /verify consults.
type EdgeState interface {
	Revoked(sid, subjectKey string, iat int64, now time.Time) bool
	GroupsOverride(subjectKey string, iat int64) ([]string, bool)
}

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
	// "revoked", "forbidden".
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
		o.CookieName = config.DefaultCookieName
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	policy, err := returnurl.New(o.AllowedDomains)
	if err != nil {
		return nil, fmt.Errorf("verify: session.allowedDomains: %w", err)
	}
	base := strings.TrimRight(o.PublicURL, "/")
	h := &Handler{
		returnTo: policy,
		o:        o,
		verifier: o.Keys.Verifier(),
		loginURL: base + "/login",
	}
	c, err := lru.New[string, verified](cacheSize)
	if err != nil {
		return nil, fmt.Errorf("verify: cache: %w", err)
	}
	h.cache = c
	return h, nil
}

// ServeHTTP implements GET /verify. Optional query parameters restrict the
// route like the plugin's settings: allowedGroups, allowedUsers,
// allowedEmailDomains (comma-separated; any match admits).
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hdr := w.Header()
	hdr.Set("Cache-Control", "no-store")
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		hdr.Set("Allow", "GET, HEAD")
		writeJSON(w, http.StatusMethodNotAllowed, "method not allowed")
		return
	}
	now := h.o.Now()
	c, outcome := h.authenticate(r, now)
	if c == nil {
		h.observe(outcome)
		h.unauthenticated(w, r)
		return
	}
	q := r.URL.Query()
	if !allowed(c, list(q.Get("allowedGroups")), list(q.Get("allowedUsers")), list(q.Get("allowedEmailDomains"))) {
		h.observe("forbidden")
		writeJSON(w, http.StatusForbidden, "forbidden")
		return
	}
	h.observe("ok")
	hdr.Set(HeaderUser, clean(c.User()))
	hdr.Set(HeaderEmail, clean(c.Email))
	hdr.Set(HeaderName, clean(c.Name))
	groups := make([]string, 0, len(c.Groups))
	for _, g := range c.Groups {
		groups = append(groups, clean(g))
	}
	hdr.Set(HeaderGroups, strings.Join(groups, ","))
	w.WriteHeader(http.StatusOK)
}

// Identify returns the verified claims of the request's session token (the
// same checks as ServeHTTP, without authorization), for the status page.
func (h *Handler) Identify(r *http.Request) (*token.Claims, bool) {
	c, _ := h.authenticate(r, h.o.Now())
	return c, c != nil
}

// authenticate returns the verified claims (groups overridden by the edge
// state) or nil and why.
func (h *Handler) authenticate(r *http.Request, now time.Time) (*token.Claims, string) {
	outcome := "unauthenticated"
	keys := h.o.Keys.PublicKeys()
	for _, raw := range h.candidates(r) {
		c, err := h.check(raw, keys, now)
		if err != nil {
			h.o.Logger.Debug("verify: token refused", "err", err)
			continue
		}
		sk := token.SubjectKey(c.Subject)
		if h.o.State.Revoked(c.SessionID, sk, c.IssuedAt, now) {
			outcome = "revoked"
			continue
		}
		if g, ok := h.o.State.GroupsOverride(sk, c.IssuedAt); ok {
			c.Groups = append([]string(nil), g...)
		}
		return c, ""
	}
	return nil, outcome
}

// check verifies raw, or finds it in the cache of tokens already verified
// against the same keys and not expired yet. It returns a copy the caller may
// change.
func (h *Handler) check(raw string, keys *token.KeySet, now time.Time) (*token.Claims, error) {
	if e, ok := h.cache.Get(raw); ok && e.keys == keys {
		if now.Unix() <= e.claims.Expiry+int64(h.verifier.Skew/time.Second) {
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

// candidates are the session cookie values, then a Bearer token, at most maxCandidates.
func (h *Handler) candidates(r *http.Request) []string {
	var out []string
	for _, ck := range r.CookiesNamed(h.o.CookieName) {
		if len(out) == maxCandidates {
			return out
		}
		if ck.Value != "" {
			out = append(out, ck.Value)
		}
	}
	if tok := token.Bearer(r.Header.Get("Authorization")); len(out) < maxCandidates && tok != "" {
		out = append(out, tok)
	}
	return out
}

// unauthenticated sends browsers to login and answers everything else 401.
func (h *Handler) unauthenticated(w http.ResponseWriter, r *http.Request) {
	if isBrowserNavigation(r) {
		target := h.loginURL
		if rd := h.returnURL(r); rd != "" {
			target += "?rd=" + url.QueryEscape(rd)
		}
		w.Header().Set("Location", target)
		w.WriteHeader(http.StatusFound)
		return
	}
	w.Header().Set("WWW-Authenticate", `Bearer realm="edgepass"`)
	writeJSON(w, http.StatusUnauthorized, "authentication required")
}

// isBrowserNavigation: GET/HEAD of the original request, Accept has
// text/html, no X-Requested-With (contracts.md).
func isBrowserNavigation(r *http.Request) bool {
	method := r.Header.Get("X-Forwarded-Method")
	if method == "" {
		method = r.Method
	}
	if method != http.MethodGet && method != http.MethodHead {
		return false
	}
	if r.Header.Get("X-Requested-With") != "" {
		return false
	}
	return strings.Contains(strings.ToLower(r.Header.Get("Accept")), "text/html")
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

func allowed(c *token.Claims, groups, users, domains []string) bool {
	if len(groups) == 0 && len(users) == 0 && len(domains) == 0 {
		return true
	}
	for _, g := range groups {
		for _, have := range c.Groups {
			if g == have {
				return true
			}
		}
	}
	for _, u := range users {
		if u == c.PreferredUsername || u == c.Subject || (c.Email != "" && strings.EqualFold(u, c.Email)) {
			return true
		}
	}
	if at := strings.LastIndexByte(c.Email, '@'); at >= 0 {
		domain := strings.ToLower(c.Email[at+1:])
		for _, d := range domains {
			if strings.ToLower(strings.TrimPrefix(d, "@")) == domain {
				return true
			}
		}
	}
	return false
}

func list(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// clean drops control characters so a claim cannot split or fold a header.
func clean(s string) string {
	if strings.IndexFunc(s, isControl) < 0 {
		return s
	}
	return strings.Map(func(r rune) rune {
		if isControl(r) {
			return -1
		}
		return r
	}, s)
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f }

func writeJSON(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(`{"error":"` + msg + `"}` + "\n"))
}
