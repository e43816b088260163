package oidcflow

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/edgepass/edgepass/plugin/policy"
)

// hostPrefix is the cookie prefix browsers accept only on a Secure cookie
// with Path=/ and no Domain, set by a secure page: no sibling subdomain and
// no plain-http page can then plant or overwrite the cookie.
const hostPrefix = "__Host-"

// maxSessionCookies bounds the session cookies one request is searched for.
const maxSessionCookies = 4

// cookies are the names and paths of the flow's cookies, fixed at New.
type cookies struct {
	secure bool
	domain string // session.cookieDomain; the other cookies are host-only
	// session is the name the session cookie is set under; legacy the other
	// name a browser may hold it under (edges accept both), "" if none.
	session, legacy string
	// binding ties a pending login to the browser that started it, so a
	// callback URL (code + state) planted in another browser is refused;
	// its path covers /login, which reuses it for every tab signing in.
	binding, bindingPath string
	// statePrefix + the state's first characters names the cookie a
	// pending login travels in (loginstate.go); statePath covers /login
	// (which trims them) and /callback.
	statePrefix, statePath string
	// loop counts bounces back to /login (see loop.go).
	loop, loopPath string
}

// newCookies names the cookies: "__Host-" + name wherever the prefix's rules
// hold (Secure and host-only; the path is then "/"), the plain name elsewhere.
// basePath is publicURL's path without the trailing slash.
func newCookies(o Options, basePath string) (cookies, error) {
	loginPath := basePath + "/login"
	base := o.CookieName
	if strings.HasPrefix(base, hostPrefix) && (!o.CookieSecure || o.CookieDomain != "") ||
		strings.HasPrefix(base, "__Secure-") && !o.CookieSecure {
		return cookies{}, fmt.Errorf("oidcflow: session.cookieName %q: browsers refuse that prefix without session.cookieSecure=true (and, for __Host-, with session.cookieDomain set); "+
			"give the name without the prefix: edgepass adds __Host- wherever it is allowed", base)
	}
	name := func(n string, hostOnly bool) string {
		if o.CookieSecure && hostOnly {
			return policy.HostCookieName(n)
		}
		return n
	}
	path := func(n, p string) string {
		if strings.HasPrefix(n, hostPrefix) {
			return "/"
		}
		return p
	}
	c := cookies{secure: o.CookieSecure, domain: o.CookieDomain}
	c.session = name(base, o.CookieDomain == "")
	if other := policy.HostCookieName(base); other != c.session {
		c.legacy = other
	} else if base != c.session {
		c.legacy = base
	}
	c.binding = name(base+"_login", true)
	c.bindingPath = path(c.binding, basePath+"/") // /login reuses it for several tabs
	c.statePrefix = name(base+"_state_", true)
	c.statePath = path(c.statePrefix, basePath+"/")
	c.loop = name(base+"_loop", true)
	c.loopPath = path(c.loop, loginPath)
	return c, nil
}

// sessionNames are the names a request may carry the session under, the
// one this daemon sets first.
func (c *cookies) sessionNames() []string {
	if c.legacy == "" {
		return []string{c.session}
	}
	return []string{c.session, c.legacy}
}

// setSession sets the session cookie.
func (c *cookies) setSession(w http.ResponseWriter, value string, maxAge time.Duration) {
	http.SetCookie(w, c.sessionCookie(c.session, value, int(maxAge/time.Second)))
}

// sessionCookie is a session cookie under name: a __Host- one without
// Domain, the plain one with the configured Domain.
func (c *cookies) sessionCookie(name, value string, maxAge int) *http.Cookie {
	ck := &http.Cookie{Name: name, Value: value, Path: "/", MaxAge: maxAge, Secure: c.secure, HttpOnly: true, SameSite: http.SameSiteLaxMode}
	if strings.HasPrefix(name, hostPrefix) {
		ck.Secure = true
	} else {
		ck.Domain = c.domain
	}
	return ck
}

// clearSession deletes the session cookie, and the cookie under the other
// name when the request carries one.
func (c *cookies) clearSession(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, c.sessionCookie(c.session, "", -1))
	c.clearLegacy(w, r)
}

// clearLegacy deletes the session cookie under the name this daemon no
// longer sets, when the request carries it: edges would otherwise keep
// trying a stale token.
func (c *cookies) clearLegacy(w http.ResponseWriter, r *http.Request) {
	if c.legacy != "" && len(r.CookiesNamed(c.legacy)) > 0 {
		http.SetCookie(w, c.sessionCookie(c.legacy, "", -1))
	}
}

// hostOnly is one of the host-only cookies (binding, loop).
func (c *cookies) hostOnly(name, path, value string, maxAge time.Duration) *http.Cookie {
	return &http.Cookie{Name: name, Value: value, Path: path, MaxAge: int(maxAge / time.Second),
		Secure: c.secure || strings.HasPrefix(name, hostPrefix), HttpOnly: true, SameSite: http.SameSiteLaxMode}
}

// sessionIDs returns the ids of the sessions whose tokens the request
// carries under either cookie name, checked by Tokens (so an unsigned sid
// names nobody), without duplicates.
func (h *Handler) sessionIDs(r *http.Request) []string {
	var sids []string
	seen := 0
	for _, name := range h.cookies.sessionNames() {
		for _, ck := range r.CookiesNamed(name) {
			if ck.Value == "" {
				continue
			}
			if seen++; seen > maxSessionCookies {
				return sids
			}
			sid, err := h.opts.Tokens.SessionID(ck.Value)
			if err != nil {
				h.log.Debug("session cookie is not a valid session token", "cookie", name, "err", err)
				continue
			}
			if !slices.Contains(sids, sid) {
				sids = append(sids, sid)
			}
		}
	}
	return sids
}
