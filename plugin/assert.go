package edgepass

import (
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/edgepass/edgepass/plugin/assertion"
	"github.com/edgepass/edgepass/plugin/edgestate"
	"github.com/edgepass/edgepass/plugin/mint"
	"github.com/edgepass/edgepass/plugin/natsedge"
	"github.com/edgepass/edgepass/plugin/policy"
)

// Identity assertions (assertionHeader): the backend gets a short-lived JWT
// the daemon signed for (token, assertionAudience), verifiable with the
// daemon's JWKS (package assertion). The edge holds no key that could sign
// one: it asks the daemon once per (token, audience) over NATS (package
// mint) and keeps the answer in the decision it serves, so the fast path is
// still one lookup. An assertion is sent until assertReuse seconds before
// its exp; from assertRenew seconds before, it is renewed in the
// background, so only a token's first request waits for the daemon.
//
// A revoked session or user never gets one: the assertion is attached only
// to a decision that admits, every edge-state change drops the affected
// decisions (lineindex.go), and the daemon checks its own edge state before
// it signs.
const (
	assertReuse   = 15
	assertRenew   = 30
	assertTimeout = 2 * time.Second
	// assertRetry: after a failure, a token's next attempt waits this long
	// (its requests meanwhile get the 503 at once).
	assertRetry = 1
)

// minted is the daemon's answer for one token.
type minted struct {
	assertion string
	exp       int64
	// groups are the effective groups (joined with NUL) the edge admitted
	// the token with when it asked: a group change asks again.
	groups string
	// reason is why there is no assertion (a policy reason code).
	reason string
	at     int64 // when it was asked for
}

// minter mints assertions; natsMinter in production, fakes in tests.
type minter interface {
	mint(raw, audience string, now int64) *minted
}

// natsMinter asks the daemon over the edge's NATS connection.
type natsMinter struct {
	w     *natsedge.Watcher
	state *edgestate.State
}

func (n *natsMinter) mint(raw, audience string, now int64) *minted {
	kid, pub := n.state.MintKey()
	if kid == "" {
		mintLog.log("no mint key in the keys fact yet (the daemon publishes it; an older daemon does not mint assertions)")
		return &minted{reason: policy.AssertionUnavailable, at: now}
	}
	subject := natsedge.AssertionSubject(n.w.Bucket(), n.w.EdgeName())
	msg, rk, err := mint.SealRequest(mint.Request{Token: raw, Audience: audience, Iat: now}, kid, pub, subject)
	if err != nil {
		mintLog.log("seal the request: " + err.Error())
		return &minted{reason: policy.AssertionUnavailable, at: now}
	}
	data, err := n.w.Request(subject, msg, assertTimeout)
	if err != nil {
		mintLog.log("ask the daemon: " + err.Error() + " (the edge's NATS permissions need " + subject + ")")
		return &minted{reason: policy.AssertionUnavailable, at: now}
	}
	rep, err := rk.Open(data)
	if err != nil {
		mintLog.log("the reply does not open (not from the daemon holding the mint key): " + err.Error())
		return &minted{reason: policy.AssertionUnavailable, at: now}
	}
	if rep.Assertion == "" {
		return &minted{reason: mintReason(rep.Reason), at: now}
	}
	c, err := assertion.Unverified(rep.Assertion)
	if err != nil || c.Audience != audience || c.Expiry <= now {
		mintLog.log("the daemon's assertion is not for this audience or already expired")
		return &minted{reason: policy.AssertionUnavailable, at: now}
	}
	return &minted{assertion: rep.Assertion, exp: c.Expiry, groups: strings.Join(c.Groups, "\x00"), at: now}
}

// mintReason maps the daemon's refusal to the edge's reason: a token the
// daemon finds revoked or expired is refused like the edge would (401); a
// daemon that cannot mint is a 503.
func mintReason(r string) string {
	switch r {
	case mint.ReasonSessionRevoked:
		return policy.SessionRevoked
	case mint.ReasonUserRevoked:
		return policy.UserRevoked
	case mint.ReasonExpired:
		return policy.Expired
	case mint.ReasonTooLong:
		return policy.TooLong
	case mint.ReasonBadToken:
		return policy.BadToken
	}
	return policy.AssertionUnavailable
}

// mintLog reports minting problems (the daemon or its key unreachable).
var mintLog = &logThrottle{prefix: "assertion"}

// assertCache is one middleware's assertions by raw token (a boundedMap),
// with one request in flight per token.
type assertCache struct {
	boundedMap
	mu      sync.Mutex
	flights map[string]chan struct{}
}

func newAssertCache(capacity int) *assertCache {
	c := &assertCache{flights: map[string]chan struct{}{}}
	c.init(capacity, mintedExpiry)
	return c
}

func mintedExpiry(v any) int64 { return v.(*minted).exp }

func (c *assertCache) get(raw string) *minted {
	a, _ := c.load(raw).(*minted)
	return a
}

// usable reports whether a can be sent now for a token admitted with
// groups and expiring at tokenExp: minted with these groups, and not within
// assertReuse of its exp (unless it lives as long as the token: the daemon
// never mints past the token's exp).
func (a *minted) usable(groups string, tokenExp, now int64) bool {
	return a != nil && a.assertion != "" && a.groups == groups && now < a.exp && (now < a.exp-assertReuse || a.exp >= tokenExp)
}

// assertionFor returns the assertion to send with raw's decision, asking
// the daemon when none is usable (one request per token at a time; the
// others wait for it) and renewing in the background when it nears its exp.
func (m *Middleware) assertionFor(raw, groups string, tokenExp, now int64) *minted {
	c := m.assertions
	a := c.get(raw)
	if a.usable(groups, tokenExp, now) {
		if now >= a.exp-assertRenew && a.exp < tokenExp {
			m.mintAsync(raw, groups, now)
		}
		return a
	}
	if a != nil && a.assertion == "" && now-a.at < assertRetry {
		return a // failed a moment ago: do not ask again for every request
	}
	return m.mintWait(raw, groups, now)
}

// mintWait asks the daemon and waits (or waits for the request in flight
// for the same token).
func (m *Middleware) mintWait(raw, groups string, now int64) *minted {
	c := m.assertions
	c.mu.Lock()
	wait, busy := c.flights[raw]
	if !busy {
		wait = make(chan struct{})
		c.flights[raw] = wait
	}
	c.mu.Unlock()
	if busy {
		<-wait
		if a := c.get(raw); a != nil && (a.assertion == "" || a.groups == groups) {
			return a
		}
		return &minted{reason: policy.AssertionUnavailable, at: now}
	}
	a := m.mintOnce(raw, groups, now)
	c.mu.Lock()
	delete(c.flights, raw)
	c.mu.Unlock()
	close(wait)
	return a
}

// mintAsync renews raw's assertion in the background unless a request for
// it is in flight already.
func (m *Middleware) mintAsync(raw, groups string, now int64) {
	c := m.assertions
	c.mu.Lock()
	if _, busy := c.flights[raw]; busy {
		c.mu.Unlock()
		return
	}
	wait := make(chan struct{})
	c.flights[raw] = wait
	c.mu.Unlock()
	go func() {
		m.mintOnce(raw, groups, now)
		c.mu.Lock()
		delete(c.flights, raw)
		c.mu.Unlock()
		close(wait)
	}()
}

// mintOnce asks the minter and caches the answer. An assertion whose groups
// differ from the edge's (the daemon has not applied a group change yet) is
// sent once but kept for about a second only.
func (m *Middleware) mintOnce(raw, groups string, now int64) *minted {
	a := m.minter.mint(raw, m.s.assertAudience, now)
	if a.assertion != "" && a.groups != groups {
		short := *a
		short.groups = groups
		if short.exp > now+assertReuse+1 {
			short.exp = now + assertReuse + 1
		}
		m.assertions.put(strings.Clone(raw), &short, now)
		return &short
	}
	if a.assertion != "" {
		m.assertions.put(strings.Clone(raw), a, now)
		return a
	}
	if a.reason == policy.AssertionUnavailable {
		// Remembered briefly, so a daemon outage costs one request per
		// token per assertRetry, not one per request.
		m.assertions.put(strings.Clone(raw), a, now)
	} else {
		m.assertions.remove(raw)
	}
	return a
}

// attachAssertion adds the assertion header to an admitting decision, or
// turns it into a refusal when there is no assertion to send.
func (m *Middleware) attachAssertion(e *decision, raw string, groups []string, now int64) {
	a := m.assertionFor(raw, strings.Join(groups, "\x00"), e.claims.Expiry, now)
	if a.assertion == "" {
		e.reason = a.reason
		// Decided again after assertRetry: the daemon may be back.
		if until := now + assertRetry; until < e.expires {
			e.expires = until
		}
		return
	}
	e.hdrNames = append(e.hdrNames, m.s.assertHeader)
	e.hdrValues = append(e.hdrValues, []string{a.assertion})
	// Served as is until the renewal window, or, for an assertion that
	// lives as long as the token, until it expires.
	until := a.exp
	if a.exp < e.claims.Expiry {
		until = a.exp - assertRenew
	}
	if until < e.expires {
		e.expires = until
	}
}

// compileAssertion validates assertionHeader and assertionAudience into s
// (after nats and the session audience are known).
func compileAssertion(cfg *Config, s *settings) error {
	header := strings.TrimSpace(cfg.AssertionHeader)
	aud := strings.TrimSpace(cfg.AssertionAudience)
	if header == "" {
		if aud != "" {
			return fieldErr("assertionAudience", "set assertionHeader too (e.g. %s): the audience names the assertion it sends", assertion.DefaultHeader)
		}
		return nil
	}
	if !policy.ValidToken(header) {
		return fieldErr("assertionHeader", "%q is not a valid header name", header)
	}
	if policy.Reserved(policy.NormalizeHeader(header)) {
		return fieldErr("assertionHeader", "%q cannot carry the assertion (the request needs it)", header)
	}
	if aud == "" {
		return fieldErr("assertionAudience", "required with assertionHeader: this backend's name, which it checks as the assertion's aud (e.g. https://billing.example.com)")
	}
	if aud == s.verifier.Audience || aud == assertion.SessionAudience || aud == assertion.ServiceAudience {
		// An assertion with the session audience would be a session token
		// to every edge that trusts the daemon's JWKS.
		return fieldErr("assertionAudience", "%q is the audience of edgepass's own tokens; give the backend its own", aud)
	}
	if len(aud) > assertion.MaxAudience || strings.ContainsAny(aud, " \t\r\n") || policy.Sanitize(aud) != aud {
		return fieldErr("assertionAudience", "%q: at most %d characters, no spaces or control characters", aud, assertion.MaxAudience)
	}
	if len(s.nats.URLs) == 0 {
		return fieldErr("assertionHeader", "needs nats.urls: the daemon mints assertions, asked over NATS")
	}
	s.assertHeader = http.CanonicalHeaderKey(header)
	s.assertAudience = aud
	return nil
}
