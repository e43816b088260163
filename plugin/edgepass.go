// Package edgepass is a Traefik middleware plugin: it verifies edgepass session
// tokens locally, follows revocations, group changes and key rotations pushed
// over NATS, authorizes per route, strips client-supplied identity headers and
// sets verified ones.
//
// Traefik runs it in Yaegi, where every call into compiled code costs a
// reflection round trip and every interpreted call allocates its whole frame,
// so ServeHTTP does almost nothing per request: one lookup of a precomputed
// result keyed by the request's Cookie (or Authorization) line, and direct
// operations on the header map. docs/architecture.md walks the request path
// and numbers the invariants it relies on.
package edgepass

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edgepass/edgepass/plugin/edgestate"
	"github.com/edgepass/edgepass/plugin/idptoken"
	"github.com/edgepass/edgepass/plugin/natsedge"
	"github.com/edgepass/edgepass/plugin/policy"
	"github.com/edgepass/edgepass/plugin/token"
)

// Middleware is one configured edgepass middleware instance.
type Middleware struct {
	next    http.Handler
	name    string // Traefik's name for this middleware, in logs
	s       *settings
	state   *edgestate.State // nil without NATS
	version *atomic.Int64    // the line index group's: state's version counter, or localVersion
	strip   *stripper
	cache   *tokenCache // raw token -> decision
	lines   *lineIndex  // exact Cookie/Authorization header line -> servable decision
	// fast is lines.m, read directly by ServeHTTP (one field, not two). It stays
	// empty when s.lineIndexOff is set: indexLine never fills it then, so every
	// request takes serveSlow.
	fast *sync.Map
	// clock is time.Now in production; tests move it (and drop expired
	// decisions from the line index, as the process-wide ticker does every
	// second).
	clock func() time.Time
	// logMu, logSecond and logCount rate-limit refusal logging.
	logMu     sync.Mutex
	logSecond int64
	logCount  int
	// minter and assertions serve assertionHeader (assert.go); nil without.
	minter     minter
	assertions *assertCache
}

// New validates the configuration and precomputes everything the request path
// needs. It starts nothing itself and does no I/O; with nats.urls it attaches to
// the process-wide NATS watcher for that setting (started once per process).
func New(ctx context.Context, next http.Handler, config *Config, name string) (http.Handler, error) {
	if next == nil {
		return nil, errors.New("edgepass: no next handler")
	}
	s, err := compile(config)
	if err != nil {
		return nil, err
	}
	w, err := edgeWatcher(s.nats, s.anchors)
	if err != nil {
		return nil, err
	}
	var state *edgestate.State
	if w != nil {
		state = w.State()
	}
	m := &Middleware{
		next:  next,
		name:  name,
		s:     s,
		strip: newStripper(s),
		cache: newTokenCache(s.cacheSize),
		clock: time.Now,
	}
	if s.assertHeader != "" {
		// compile refuses assertionHeader without nats.urls.
		m.minter = &natsMinter{w: w, state: state}
		m.assertions = newAssertCache(s.cacheSize)
	}
	m.attach(state)
	return m, nil
}

// edgeWatcher returns the process-wide NATS watcher for the settings (nil
// without nats.urls): its state, and its requests to the daemon.
func edgeWatcher(n NATSConfig, anchors []string) (*natsedge.Watcher, error) {
	if len(n.URLs) == 0 {
		return nil, nil
	}
	w, err := natsedge.Shared(natsedge.Config{
		URLs:               n.URLs,
		Bucket:             n.Bucket,
		Token:              n.Token,
		TokenFile:          n.TokenFile,
		User:               n.User,
		Password:           n.Password,
		PasswordFile:       n.PasswordFile,
		NKeySeed:           n.NKeySeed,
		NKeySeedFile:       n.NKeySeedFile,
		CredsFile:          n.CredsFile,
		CertFile:           n.CertFile,
		KeyFile:            n.KeyFile,
		EdgeName:           n.EdgeName,
		TrustAnchors:       anchors,
		CAFile:             n.CAFile,
		TLSServerName:      n.TLSServerName,
		InsecureSkipVerify: n.InsecureSkipVerify,
		ReplicaID:          n.ReplicaID,
		Version:            Version,
		Logf:               logf,
	})
	if err != nil {
		return nil, fmt.Errorf("edgepass: nats: %w", err)
	}
	return w, nil
}

// attach makes m read state (nil: no NATS): its version counter for cached
// tokens and its line-index group, emptied on every change of that state.
func (m *Middleware) attach(state *edgestate.State) {
	g := versionGroupFor(state)
	m.state = state
	m.version = g.version
	m.lines = newLineIndex(g, m.s.cacheSize, func() int64 { return m.clock().Unix() })
	m.fast = &m.lines.m
}

// ServeHTTP strips client identity headers, authenticates and authorizes the
// request, sets verified identity headers and calls the next handler.
//
// It is only the common case — a line in the line index, from a client
// sending only header names seen before — in three compiled calls
// (docs/architecture.md, I12); everything else goes to serveSlow. The header
// check is I6: names WriteSubset skips (invalid names, names with no value)
// are ones Traefik never forwards either.
func (m *Middleware) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	h := r.Header
	line := h["Cookie"]
	if line == nil {
		line = h["Authorization"]
	}
	if len(line) == 1 {
		v, _ := m.fast.Load(line[0])
		if e, ok := v.(*decision); ok {
			if h.WriteSubset(refuseWrites, e.keep) != nil {
				m.restrip(h, line[0], e)
			}
			for i, name := range e.hdrNames {
				h[name] = e.hdrValues[i]
			}
			m.next.ServeHTTP(rw, r)
			return
		}
	}
	m.serveSlow(rw, r)
}

// restrip strips a request on an indexed line that brought header names
// outside the line's keep set: names to strip, or harmless ones the memo may
// not hold yet. If the memo learned names since the line was indexed, the
// line is indexed again with them, so the client's next request is fast.
func (m *Middleware) restrip(h http.Header, line string, e *decision) {
	if keep := m.strip.clean(h); len(keep) != len(e.keep) { // memo maps only grow, one name per copy
		le := *e // already an indexed copy: only keep changes
		le.keep = keep
		m.lines.put(strings.Clone(line), &le, m.clock().Unix())
	}
}

// serveSlow is every case but the common one: public paths, stale state, first
// sight of a token or of its header line, a header name not seen before or one
// to strip, expiry, edge-state changes and refusals.
func (m *Middleware) serveSlow(rw http.ResponseWriter, r *http.Request) {
	keep := m.strip.clean(r.Header)
	if m.s.lineIndexOff && m.servePublicOrStale(rw, r) {
		return
	}
	h := r.Header
	if m.state != nil {
		if reason := m.unavailable(); reason != "" {
			m.refuse(rw, r, reason)
			return
		}
	}
	raw, line, bearer := "", "", false
	c, err := r.Cookie(m.s.hostCookie)
	if err != nil {
		c, err = r.Cookie(m.s.cookieName)
	}
	if err == nil {
		raw = c.Value
		if lines := h["Cookie"]; len(lines) == 1 {
			line = lines[0]
		}
	} else if a := h["Authorization"]; len(a) == 1 && h["Cookie"] == nil {
		// One assignment per statement (docs/architecture.md, I1).
		raw = token.Bearer(a[0])
		bearer = true
		line = a[0]
	} else if len(a) > 0 {
		raw = token.Bearer(a[0])
		bearer = true
	}
	now := m.clock().Unix()
	e := m.cache.get(raw)
	reason := ""
	if e == nil || now >= e.expires || m.version.Load() != e.version {
		e, reason = m.resolve(raw, e, now)
	}
	if e != nil && (e.service || e.idp != nil) && !bearer {
		// A service token or an IdP access token is a bearer token only:
		// never a cookie.
		m.refuse(rw, r, policy.BadToken)
		return
	}
	if line != "" && !m.s.lineIndexOff {
		m.indexLine(line, bearer, e, keep, now)
	}
	if e != nil {
		reason = e.reason
	}
	if reason != "" {
		m.refuse(rw, r, reason)
		return
	}
	for i, name := range e.hdrNames {
		h[name] = e.hdrValues[i]
	}
	if m.s.removeCookie {
		m.dropCookie(h)
		if bearer && raw != "" {
			// The bearer token was the credential: a backend never gets it.
			delete(h, "Authorization")
		}
	}
	m.next.ServeHTTP(rw, r)
}

// unavailable is why this edge cannot decide at all ("" when it can): it
// never completed a sync with NATS (requireSync), or it has no key to verify
// with. A 503 that says so, rather than a 401 that sends the browser to a
// login that can only loop.
func (m *Middleware) unavailable() string {
	if m.s.requireSync && m.state.CurrentAsOfUnix() == 0 {
		return policy.NotSynced
	}
	if m.keys() == nil {
		return policy.NoKeys
	}
	return ""
}

// maxLineKey bounds the header lines used as cache keys (a line is the whole
// Cookie header: the session cookie plus whatever else the site sets).
const maxLineKey = 2 * token.MaxTokenSize

// indexLine makes the exact Cookie (or Authorization) header line a key for the
// decision of the token it carries, so the next request with the same line
// costs ServeHTTP a single lookup (docs/architecture.md, I4). Only servable
// decisions go in, each a copy of the token's decision carrying keep and, with
// removeCookie, the line without the session cookie as one more header (I5).
func (m *Middleware) indexLine(line string, bearer bool, e *decision, keep map[string]bool, now int64) {
	if len(line) > maxLineKey {
		return
	}
	if e == nil || e.reason != "" {
		m.lines.remove(line)
		return
	}
	le := *e
	le.keep = keep
	if m.s.removeCookie {
		// One more header to set: the Cookie line without the session
		// cookie, or no Authorization at all when the line is the bearer
		// token (a nil value is sent as no header).
		name := "Cookie"
		var v []string
		if bearer {
			name = "Authorization"
		} else if rest := withoutCookie(line, m.s.cookieName, m.s.hostCookie); rest != "" {
			v = []string{rest}
		}
		le.hdrNames = append(append(make([]string, 0, len(e.hdrNames)+1), e.hdrNames...), name)
		le.hdrValues = append(append(make([][]string, 0, len(e.hdrValues)+1), e.hdrValues...), v)
	}
	m.lines.put(strings.Clone(line), &le, now)
}

// servePublicOrStale handles public paths and stale-state refusal; true = answered.
// Staleness counts from when the state was last complete (CurrentAsOfUnix),
// so a strict route never decides on a partial replay: at start, or after an
// outage longer than maxStaleness while the missed facts are replayed.
func (m *Middleware) servePublicOrStale(rw http.ResponseWriter, r *http.Request) bool {
	if m.isPublic(r.URL.Path) {
		if m.s.removeCookie {
			m.dropCookie(r.Header)
		}
		m.next.ServeHTTP(rw, r)
		return true
	}
	if m.s.refuseStale && m.state != nil && m.clock().Unix()-m.state.CurrentAsOfUnix() > m.s.maxStaleSec {
		m.refuse(rw, r, policy.Stale)
		return true
	}
	return false
}

// resolve is the slow path of the token lookup: first sight (verify), expiry
// (drop), or an edge-state change since the decision was computed (recompute).
func (m *Middleware) resolve(raw string, e *decision, now int64) (*decision, string) {
	if raw == "" {
		return nil, policy.NoToken
	}
	if len(raw) > token.MaxTokenSize && (m.s.idp == nil || len(raw) > idptoken.MaxTokenSize) {
		return nil, policy.BadToken
	}
	if e == nil {
		return m.verify(raw, now)
	}
	if now >= e.tokenExpires {
		m.cache.remove(raw)
		return nil, policy.Expired
	}
	return m.recompute(raw, e, now)
}

func (m *Middleware) dropCookie(h http.Header) {
	lines := h["Cookie"]
	if len(lines) == 0 {
		return
	}
	kept := make([]string, 0, len(lines))
	for _, line := range lines {
		if v := withoutCookie(line, m.s.cookieName, m.s.hostCookie); v != "" {
			kept = append(kept, v)
		}
	}
	if len(kept) == 0 {
		delete(h, "Cookie")
		return
	}
	h["Cookie"] = kept
}

func (m *Middleware) isPublic(path string) bool {
	if !plainPath(path) {
		return false
	}
	if m.s.publicExact[path] {
		return true
	}
	for _, p := range m.s.publicPrefix {
		if strings.HasPrefix(path, p) {
			return true
		}
	}
	return false
}

// plainPath reports a path that every backend reads the same way: no "." or
// ".." segment, no ";" (path parameters: Tomcat reads "/public/..;/admin" as
// "/admin"), no backslash, no "%" (decoded twice by some backends) and no NUL.
// Anything else is never public, so a public prefix cannot be walked out of.
func plainPath(p string) bool {
	if strings.ContainsAny(p, ";\\%\x00") {
		return false
	}
	for i := strings.Index(p, "/."); i >= 0; i = strings.Index(p, "/.") {
		p = p[i+2:]
		if p == "" || p[0] == '/' || p == "." || strings.HasPrefix(p, "./") {
			return false
		}
	}
	return true
}

// keys are the verification keys: from NATS once they arrived, else inline.
func (m *Middleware) keys() *token.KeySet {
	if m.state != nil {
		if ks := m.state.Keys(); ks != nil {
			return ks
		}
	}
	return m.s.inlineKeys
}

// verify checks a token seen for the first time and caches the result when valid.
// Invalid tokens are not cached, so a flood of forged tokens costs CPU (one
// signature check each) but never memory.
//
// The version is read before the keys: a rotation racing with the check then
// leaves the decision at an old version, which the line index refuses and the
// next request recomputes (the other order could stamp a check against removed
// keys with the new version).
func (m *Middleware) verify(raw string, now int64) (*decision, string) {
	version := m.version.Load()
	ks := m.keys()
	v := &m.s.verifier
	if m.s.serviceAuds != nil {
		v = &m.s.anyAudience // service.go: tokenKind checks the audience
	}
	c, err := v.Verify(raw, ks, time.Unix(now, 0))
	if err != nil {
		if m.s.idp != nil && idpCandidate(err) {
			return m.verifyIdP(raw, version, now) // bearer.go
		}
		return nil, policy.TokenReason(err)
	}
	if m.s.serviceAuds != nil {
		if reason := m.tokenKind(c); reason != "" {
			return nil, reason
		}
	}
	if c.SessionID == "" {
		return nil, policy.BadToken
	}
	e := m.build(raw, c, ks, token.SubjectKey(c.Subject), version, now)
	m.cache.put(strings.Clone(raw), e, now)
	return e, ""
}

// recompute makes a cached decision again after the edge state
// changed; if the keys changed (rotation, revocation) the token is verified
// again.
func (m *Middleware) recompute(raw string, old *decision, now int64) (*decision, string) {
	version := m.version.Load()
	ks := m.keys()
	if ks != old.keys || (old.idp != nil && old.idp != m.idpSource()) {
		// New keys (a rotation, a revoked key, new IdP keys): verify again.
		m.cache.remove(raw)
		return m.verify(raw, now)
	}
	e := m.build(raw, old.claims, ks, old.subjectKey, version, now)
	e.idp = old.idp
	m.cache.put(strings.Clone(raw), e, now)
	return e, ""
}

// build applies the edge state and the route's rules to verified claims —
// policy.Decide, the decision /verify makes too — and formats the identity
// headers. version is the edge-state version read before anything the
// decision depends on (keys included): a change racing with the computation
// leaves the decision stale, and the next request recomputes it.
func (m *Middleware) build(raw string, c *token.Claims, ks *token.KeySet, subjectKey string, version, now int64) *decision {
	e := &decision{claims: c, keys: ks, expires: c.Expiry + m.s.skewSec, tokenExpires: c.Expiry + m.s.skewSec, subjectKey: subjectKey, version: version,
		service: isService(c)}
	var st policy.State
	if m.state != nil {
		st = m.state
	}
	d := m.s.pol.Decide(c, subjectKey, st, time.Unix(now, 0))
	e.reason = d.Reason
	for i, name := range d.Names {
		e.hdrNames = append(e.hdrNames, name)
		e.hdrValues = append(e.hdrValues, []string{d.Values[i]})
	}
	if m.minter != nil {
		if e.reason == "" {
			m.attachAssertion(e, raw, d.Groups, now)
		} else {
			// Refused (revoked, not allowed): its assertion goes too.
			m.assertions.remove(raw)
		}
	}
	return e
}
