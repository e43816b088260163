package oidcflow

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/edgepass/edgepass/daemon/session"
)

// Login loop: an edge that refuses every session (a wrong NATS password, a
// missing trust anchor, a cookie domain that does not cover the app) sends a
// browser that has just signed in straight back to /login. Each round trip
// would mint another session, without end. The daemon counts such bounces —
// a /login with a valid session cookie issued seconds ago — in a small
// sealed cookie (no server memory, so every replica sees the same count)
// and, at loopLimit within loopWindow, explains the problem instead of
// signing in again: status 409 (Conflict: the browser holds a session the
// site refuses), with a page saying what to check.
const (
	loopLimit  = 3
	loopWindow = 2 * time.Minute
	// loopFresh: a session younger than this, presented at /login, was
	// just issued and already refused.
	loopFresh = 30 * time.Second
	loopAAD   = "edgepass login loop"
)

// loopState is the loop cookie's sealed content.
type loopState struct {
	N     int    `json:"n"`     // bounces counted
	First int64  `json:"first"` // unix seconds of the first
	RD    string `json:"rd"`    // digest of the return URL they bounce back to
}

// rdDigest names a requested return URL (the rd parameter as sent) in the
// loop cookie without carrying it.
func rdDigest(rd string) string {
	sum := sha256.Sum256([]byte(rd))
	return base64.RawURLEncoding.EncodeToString(sum[:8])
}

// bounced counts this /login as a bounce when the browser presents a fresh
// session and comes back for the same return URL as the bounces before it
// (an edge refusing the session sends the browser back to the page it
// asked for; a user signing in again for other pages is not a loop), and
// reports the count and whether it reached loopLimit.
func (h *Handler) bounced(w http.ResponseWriter, r *http.Request, rd string) (int, bool) {
	now := h.now()
	if !h.freshSession(r, now) {
		return 0, false
	}
	st := h.readLoop(r, now)
	if rd := rdDigest(rd); st.RD != rd {
		st = loopState{First: now.Unix(), RD: rd}
	}
	st.N++
	sealed := h.opts.Seal.Seal(mustJSON(st), loopAAD)
	http.SetCookie(w, h.cookies.hostOnly(h.cookies.loop, h.cookies.loopPath, sealed, loopWindow))
	return st.N, st.N >= loopLimit
}

// freshSession reports whether the request carries a valid session cookie
// whose session was issued less than loopFresh ago.
func (h *Handler) freshSession(r *http.Request, now time.Time) bool {
	for _, sid := range h.sessionIDs(r) {
		s, _, err := h.opts.Store.Get(r.Context(), sid)
		if err != nil {
			h.log.Debug("login: cannot read the presented session", "sid", session.Short(sid), "err", err)
			continue
		}
		if age := now.Sub(s.IssuedAt); age < loopFresh && age > -loopFresh {
			return true
		}
	}
	return false
}

// readLoop returns the loop cookie's state, or a new one when it is absent,
// forged, or older than loopWindow.
func (h *Handler) readLoop(r *http.Request, now time.Time) loopState {
	fresh := loopState{First: now.Unix()}
	c, err := r.Cookie(h.cookies.loop)
	if err != nil || len(c.Value) > 512 {
		return fresh
	}
	raw, err := h.opts.Seal.Open(c.Value, loopAAD)
	var st loopState
	if err != nil || json.Unmarshal(raw, &st) != nil || st.N < 0 {
		return fresh
	}
	if first := time.Unix(st.First, 0); now.Sub(first) > loopWindow || first.After(now.Add(loopFresh)) {
		return fresh
	}
	return st
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // a struct of ints
	}
	return b
}

// refuseLoop ends a login loop with the explanation, and warns the
// operator with the host whose edge refuses the session.
func (h *Handler) refuseLoop(w http.ResponseWriter, returnTo string, n int) {
	host, shown := "(no return URL)", "the site"
	if u, err := url.Parse(returnTo); err == nil && u.Host != "" {
		host, shown = u.Host, u.Host
	}
	h.opts.Metrics.LoginFailed(ReasonLoop)
	h.log.Warn("login loop: a browser keeps coming back to /login with a session issued seconds ago, so the edge serving the return URL refuses it; not issuing more sessions. "+
		"Check that edge's NATS credentials (nats.user, nats.passwordFile) and trustAnchors, `edgepass edges` for whether it is synced, and that session.cookieDomain covers the host",
		"host", host, "bounces", n, "window", loopWindow)
	p := page{
		Title: "The site refuses your session",
		Message: fmt.Sprintf("You signed in, and %s sent you straight back to sign in again, %d times within %d minutes: it refuses your session. "+
			"edgepass stopped here instead of creating more sessions. An administrator should check:", shown, n, int(loopWindow/time.Minute)),
		Items: []string{
			"the NATS credentials of the edge (Traefik) serving " + shown + ": nats.user and nats.passwordFile of its edgepass middleware must be an edge credential of the daemon;",
			"its trustAnchors setting: it must hold the daemon's trust anchor (edgepass keys anchor prints it);",
			"edgepass edges: whether that edge is connected and synced;",
			"the cookie domain (session.cookieDomain): it must cover " + shown + ", or the browser never sends the session cookie there.",
		},
	}
	if returnTo != "" {
		p.Link, p.LinkText = returnTo, "Try again"
	}
	h.render(w, http.StatusConflict, p)
}
