package oidcflow

import (
	"cmp"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"
)

// Pending logins travel in the browser, not in a replica's memory: /login
// seals the login (state, nonce, PKCE verifier, return URL, the browser's
// binding cookie, expiry) with Options.StateSeal into a short-lived
// login-state cookie named after the state, and /callback opens it. Any
// replica sharing the key ring completes any callback, a flood of /login
// cannot push anyone's login out, and a browser holds at most
// PendingLogins of them (several tabs signing in at once).
//
// Refusals: a callback whose state has no cookie (forged, used, expired,
// dropped, another browser's), a cookie that does not open for its state
// (modified, moved to another login, sealed by another installation or
// with a key rotated out), an expired login, or a binding cookie other than
// the one sealed in (the state copied into another browser). The cookie is
// deleted at the first callback for its state, so a replayed callback URL
// finds nothing in the same browser; beyond that the IdP's single-use
// codes and PKCE hold.

// loginState is one pending login, sealed into its cookie.
type loginState struct {
	State    string `json:"s"`           // the state parameter sent to the IdP
	Nonce    string `json:"n"`           // expected in the ID token
	Verifier string `json:"v"`           // PKCE code verifier
	Binding  string `json:"b"`           // the browser's login binding cookie
	ReturnTo string `json:"r,omitempty"` // already checked against the allowed domains
	Exp      int64  `json:"e"`           // unix nanoseconds (they also order a browser's logins)
}

const (
	// stateLen is the length of a state (crypto/rand.Text: 26 base32
	// characters, 130 bits); stateSlotLen of it names the cookie.
	stateLen     = 26
	stateSlotLen = 10
	// stateAAD binds a sealed login to its cookie's slot.
	stateAAD = "edgepass pending login "
	// maxStateCookies bounds the login-state cookies of one request that
	// are opened; the rest are deleted unread.
	maxStateCookies = 16
)

// validState reports whether s looks like a state this daemon issues.
func validState(s string) bool {
	if len(s) != stateLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= 'A' && c <= 'Z' || c >= '2' && c <= '7') {
			return false
		}
	}
	return true
}

// stateCookieName is the cookie a login with this state travels in.
func (h *Handler) stateCookieName(state string) string {
	return h.cookies.statePrefix + state[:stateSlotLen]
}

// sealState turns a login into its cookie; a return URL too long to fit
// one cookie is replaced by the default page (with a warning).
func (h *Handler) sealState(st loginState) (*http.Cookie, error) {
	name := h.stateCookieName(st.State)
	aad := stateAAD + st.State[:stateSlotLen]
	sealed := h.opts.StateSeal.Seal(mustJSON(st), aad)
	if len(name)+1+len(sealed) > maxCookieBytes && st.ReturnTo != h.opts.DefaultRedirect {
		h.log.Warn("login: return URL too long to travel in the login cookie; the browser lands on session.defaultRedirect", "length", len(st.ReturnTo))
		st.ReturnTo = h.opts.DefaultRedirect
		sealed = h.opts.StateSeal.Seal(mustJSON(st), aad)
	}
	if len(name)+1+len(sealed) > maxCookieBytes {
		return nil, fmt.Errorf("login-state cookie of %d bytes exceeds what browsers keep (%d); shorten session.cookieName", len(name)+1+len(sealed), maxCookieBytes)
	}
	return h.cookies.hostOnly(name, h.cookies.statePath, sealed, PendingTTL), nil
}

// errStateMismatch: the cookie opened but holds another login.
var errStateMismatch = errors.New("login-state cookie holds another login")

// errStateExpired: the login took longer than PendingTTL.
var errStateExpired = errors.New("login expired (took longer than 10 minutes)")

// errNoState: the callback names no login this browser holds (forged,
// already used, expired, dropped for newer logins, another browser's).
var errNoState = errors.New("no login-state cookie for this state: already used, expired, dropped for newer logins, or started in another browser")

// openState opens a login-state cookie; an error means it was not sealed
// for this slot by a key this daemon holds.
func (h *Handler) openState(name, value string) (loginState, error) {
	var st loginState
	slot, ok := strings.CutPrefix(name, h.cookies.statePrefix)
	if !ok || len(slot) != stateSlotLen || len(value) > maxCookieBytes {
		return st, errors.New("not a login-state cookie")
	}
	raw, err := h.opts.StateSeal.Open(value, stateAAD+slot)
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal(raw, &st); err != nil {
		return st, fmt.Errorf("decode login state: %w", err)
	}
	if !validState(st.State) || st.State[:stateSlotLen] != slot {
		return st, errStateMismatch
	}
	return st, nil
}

// clearState deletes a login-state cookie.
func (h *Handler) clearState(w http.ResponseWriter, name string) {
	http.SetCookie(w, h.cookies.hostOnly(name, h.cookies.statePath, "", -time.Second))
}

// trimStates keeps the browser's login-state cookies bounded before /login
// adds one: it deletes those that are unreadable, expired or bound to
// another binding cookie, and the oldest beyond PendingLogins-1.
func (h *Handler) trimStates(w http.ResponseWriter, r *http.Request, binding string, now time.Time) {
	type held struct {
		name string
		exp  int64
	}
	var live []held
	seen := 0
	for _, c := range r.Cookies() {
		if !strings.HasPrefix(c.Name, h.cookies.statePrefix) {
			continue
		}
		if seen++; seen > maxStateCookies {
			h.clearState(w, c.Name)
			continue
		}
		st, err := h.openState(c.Name, c.Value)
		if err != nil || st.Exp <= now.UnixNano() || subtle.ConstantTimeCompare([]byte(st.Binding), []byte(binding)) != 1 {
			h.clearState(w, c.Name)
			continue
		}
		live = append(live, held{c.Name, st.Exp})
	}
	slices.SortFunc(live, func(a, b held) int { return cmp.Compare(b.exp, a.exp) }) // newest first
	for i, l := range live {
		if i >= h.opts.PendingLogins-1 {
			h.clearState(w, l.name)
		}
	}
}

// takeState finds and opens the login of a callback's state and deletes
// its cookie (one attempt per login). The error is for the log; the
// browser gets a generic page.
func (h *Handler) takeState(w http.ResponseWriter, r *http.Request, state string, now time.Time) (loginState, error) {
	if !validState(state) {
		return loginState{}, fmt.Errorf("%w (no state, or not one this daemon issues)", errNoState)
	}
	name := h.stateCookieName(state)
	c, err := r.Cookie(name)
	if err != nil {
		return loginState{}, errNoState
	}
	h.clearState(w, name)
	st, err := h.openState(name, c.Value)
	if err != nil {
		return st, fmt.Errorf("login-state cookie refused (altered, moved from another login, or sealed with a key this daemon no longer holds): %w", err)
	}
	if subtle.ConstantTimeCompare([]byte(st.State), []byte(state)) != 1 {
		return st, errStateMismatch
	}
	if now.UnixNano() > st.Exp {
		return st, errStateExpired
	}
	return st, nil
}
