package console

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/edgepass/edgepass/daemon/events"
	"github.com/edgepass/edgepass/daemon/internal/logsafe"
	"github.com/edgepass/edgepass/daemon/internal/sameorigin"
	"github.com/edgepass/edgepass/daemon/oidcflow"
	"github.com/edgepass/edgepass/daemon/session"
)

// Purposes the console's sealed cookies are bound to.
const (
	sessionAAD = "edgepass console session"
	signInAAD  = "edgepass console sign-in"
)

// signInTTL bounds a pending console sign-in.
const signInTTL = 10 * time.Minute

// maxForm bounds console form bodies.
const maxForm = 64 << 10

// maxCookieBytes is what browsers keep of one cookie; a longer console
// cookie was not sealed here.
const maxCookieBytes = 4096

// adminSession is a signed-in administrator, sealed in the console cookie.
type adminSession struct {
	Sub   string `json:"sub"`
	User  string `json:"user,omitempty"`
	Email string `json:"email,omitempty"`
	Name  string `json:"name,omitempty"`
	Iat   int64  `json:"iat"`
	Exp   int64  `json:"exp"`
	// CSRF is this sign-in's form token: only the console's own pages
	// (which read it from the sealed cookie) can put it in a form.
	CSRF string `json:"csrf"`
}

// Actor is the administrator as the audit trail names them.
func (s *adminSession) Actor() string { return session.Label(s.User, s.Email, s.Sub) }

// pendingSignIn is a started sign-in, sealed in the sign-in cookie.
type pendingSignIn struct {
	oidcflow.SignIn
	RD  string `json:"rd,omitempty"`
	Exp int64  `json:"exp"`
}

func (h *Handler) setCookie(w http.ResponseWriter, name, value string, maxAge time.Duration) {
	c := &http.Cookie{
		Name: name, Value: value, Path: Prefix, HttpOnly: true, Secure: h.secure,
		SameSite: http.SameSiteLaxMode, MaxAge: int(maxAge / time.Second),
	}
	if maxAge < 0 {
		c.MaxAge = -1
	}
	http.SetCookie(w, c)
}

// currentSession opens the console cookie; nil when absent, forged,
// expired or sealed for another purpose.
func (h *Handler) currentSession(r *http.Request) *adminSession {
	c, err := r.Cookie(h.cookie)
	if err != nil || len(c.Value) > maxCookieBytes {
		return nil
	}
	raw, err := h.o.Seal.Open(c.Value, sessionAAD)
	if err != nil {
		return nil
	}
	var s adminSession
	if json.Unmarshal(raw, &s) != nil || s.Sub == "" || s.CSRF == "" || h.now().Unix() >= s.Exp {
		return nil
	}
	return &s
}

// localPath keeps rd only when it is a console page of this origin.
func localPath(rd string) string {
	if !strings.HasPrefix(rd, Prefix) || strings.HasPrefix(rd, "//") || strings.ContainsAny(rd, "\\\r\n") || len(rd) > 1024 {
		return Prefix
	}
	return rd
}

// startSignIn handles GET /console/signin?rd=: off to the IdP.
func (h *Handler) startSignIn(w http.ResponseWriter, r *http.Request) {
	authURL, st, err := h.o.SignIn.StartSignIn(r.Context(), h.callback)
	if err != nil {
		h.log.Error("console: cannot start a sign-in", "err", err)
		h.render(w, r, http.StatusBadGateway, nil, "message", view{Title: "Sign-in unavailable",
			Message: "The identity provider cannot be reached right now. Please try again in a moment."})
		return
	}
	p := pendingSignIn{SignIn: st, RD: localPath(r.URL.Query().Get("rd")), Exp: h.now().Add(signInTTL).Unix()}
	raw, _ := json.Marshal(p)
	h.setCookie(w, h.signin, h.o.Seal.Seal(raw, signInAAD), signInTTL)
	http.Redirect(w, r, authURL, http.StatusFound)
}

// finishSignIn handles GET /console/callback: the IdP sends the browser
// back here. An administrator gets the console cookie; anyone else a 403
// page, no cookie, and nothing of the console.
func (h *Handler) finishSignIn(w http.ResponseWriter, r *http.Request) {
	c, err := r.Cookie(h.signin)
	var p pendingSignIn
	ok := err == nil && len(c.Value) <= maxCookieBytes
	if ok {
		raw, err := h.o.Seal.Open(c.Value, signInAAD)
		ok = err == nil && json.Unmarshal(raw, &p) == nil && h.now().Unix() < p.Exp
	}
	h.setCookie(w, h.signin, "", -1)
	if !ok {
		h.log.Info("console: callback without a valid pending sign-in (expired, used, or another browser's)")
		h.render(w, r, http.StatusBadRequest, nil, "message", view{Title: "Sign-in expired",
			Message: "This sign-in attempt has expired or was not started in this browser.", Link: Prefix + "signin", LinkText: "Sign in again"})
		return
	}
	person, err := h.o.SignIn.FinishSignIn(r.Context(), h.callback, r.URL.Query(), p.SignIn)
	if err != nil {
		status := http.StatusBadRequest
		if !errors.Is(err, oidcflow.ErrSignInState) && !errors.Is(err, oidcflow.ErrSignInRefused) && !errors.Is(err, oidcflow.ErrSignInInvalid) {
			status = http.StatusBadGateway
		}
		h.log.Warn("console: sign-in failed", "err", err)
		h.render(w, r, status, nil, "message", view{Title: "Sign-in failed",
			Message: "The identity provider's answer could not be used.", Link: Prefix + "signin", LinkText: "Sign in again"})
		return
	}
	s := &adminSession{Sub: person.Subject, User: person.Username, Email: person.Email, Name: person.Name, Iat: h.now().Unix()}
	groups := person.Groups
	if h.o.Overrides != nil {
		g, over, err := h.o.Overrides.GroupsOverride(r.Context(), person.Subject)
		if err != nil {
			// It might take the admin group away: fail closed.
			h.log.Error("console: cannot read the person's group override; sign-in refused", "sub", person.Subject, "err", err)
			h.render(w, r, http.StatusServiceUnavailable, nil, "message", view{Title: "Sign-in unavailable",
				Message: "edgepass could not check your groups right now. Please try again in a moment.", Link: Prefix + "signin", LinkText: "Sign in again"})
			return
		}
		if over {
			groups = g // an administrator's override wins, as for edge logins
		}
	}
	if !h.isAdmin(groups) {
		h.log.Warn("console: sign-in refused: not in an administrator group", "sub", person.Subject, "user", person.Username)
		h.record(r, s, events.Event{Kind: events.KindConsoleDenied, User: s.User, Email: s.Email, Subject: s.Sub,
			Actor: s.Actor(), ActorType: events.ActorUser, Source: events.SourceConsole, Detail: "not in admin.console.groups"})
		h.forbidden(w, r)
		return
	}
	s.Exp = h.now().Add(h.o.SessionLifetime).Unix()
	s.CSRF = rand.Text()
	raw, _ := json.Marshal(s)
	h.setCookie(w, h.cookie, h.o.Seal.Seal(raw, sessionAAD), h.o.SessionLifetime)
	h.log.Info("console: administrator signed in", "sub", s.Sub, "user", s.User)
	h.record(r, s, events.Event{Kind: events.KindConsoleSignIn, User: s.User, Email: s.Email, Subject: s.Sub})
	http.Redirect(w, r, localPath(p.RD), http.StatusSeeOther)
}

// forbidden is the answer for a person who is not an administrator: the
// same page whatever the reason, and nothing of the console in it.
func (h *Handler) forbidden(w http.ResponseWriter, r *http.Request) {
	h.setCookie(w, h.cookie, "", -1)
	h.render(w, r, http.StatusForbidden, nil, "message", view{Title: "Forbidden",
		Message: "Your account may not use the edgepass console. Ask an administrator if you need access."})
}

// signOut handles POST /console/signout.
func (h *Handler) signOut(w http.ResponseWriter, r *http.Request, s *adminSession) {
	h.setCookie(w, h.cookie, "", -1)
	h.record(r, s, events.Event{Kind: events.KindConsoleSignOut, User: s.User, Email: s.Email, Subject: s.Sub})
	http.Redirect(w, r, Prefix+"signed-out", http.StatusSeeOther)
}

func (h *Handler) signedOut(w http.ResponseWriter, r *http.Request) {
	h.render(w, r, http.StatusOK, nil, "message", view{Title: "Signed out",
		Message: "You are signed out of the console (not of the identity provider).", Link: Prefix, LinkText: "Sign in again"})
}

// record adds a console event with the administrator as the actor.
func (h *Handler) record(r *http.Request, s *adminSession, e events.Event) {
	if e.Actor == "" {
		e.Actor, e.ActorType = s.Actor(), events.ActorAdmin
	}
	if e.Source == "" {
		e.Source = events.SourceConsole
	}
	h.o.Audit.Record(r.Context(), e)
}

// authorize returns the request's administrator: a valid cookie whose
// person the edges have not revoked since and whose override, if any,
// keeps an administrator group. ok false means it has answered.
func (h *Handler) authorize(w http.ResponseWriter, r *http.Request) (*adminSession, bool) {
	s := h.currentSession(r)
	if s == nil {
		if r.Method == http.MethodGet {
			http.Redirect(w, r, Prefix+"signin?rd="+url.QueryEscape(r.URL.RequestURI()), http.StatusFound)
		} else {
			h.render(w, r, http.StatusForbidden, nil, "message", view{Title: "Forbidden", Message: "Sign in to the console first."})
		}
		return nil, false
	}
	return s, h.inStanding(w, r, s)
}

// inStanding reports whether the person of console session s may still
// use the console: the edges have not revoked them since s began, and an
// override of their groups, if any, keeps an administrator group. false
// means it has answered.
func (h *Handler) inStanding(w http.ResponseWriter, r *http.Request, s *adminSession) bool {
	if h.o.Standing == nil {
		return true
	}
	revoked, groups, over := h.o.Standing.Standing(s.Sub, time.Unix(s.Iat, 0))
	if revoked {
		h.log.Warn("console: administrator's sessions were revoked; console session ended", "sub", s.Sub)
		h.setCookie(w, h.cookie, "", -1)
		h.render(w, r, http.StatusForbidden, nil, "message", view{Title: "Signed out",
			Message: "Your sessions were ended by an administrator.", Link: Prefix + "signin", LinkText: "Sign in again"})
		return false
	}
	if over && !h.isAdmin(groups) {
		h.log.Warn("console: administrator's group override has no admin group; refused", "sub", s.Sub)
		h.forbidden(w, r)
		return false
	}
	return true
}

// page wraps a GET page handler: an administrator is required.
func (h *Handler) page(f func(w http.ResponseWriter, r *http.Request, s *adminSession)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if s, ok := h.authorize(w, r); ok {
			f(w, r, s)
		}
	}
}

// post wraps a state-changing handler: the request must come from the
// console's own page (Origin, else Sec-Fetch-Site) and carry the session's
// CSRF token; otherwise it is refused with 403 and changes nothing.
func (h *Handler) post(f func(w http.ResponseWriter, r *http.Request, s *adminSession)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, maxForm)
		if err := r.ParseForm(); err != nil {
			h.render(w, r, http.StatusBadRequest, nil, "message", view{Title: "Bad request", Message: "The form could not be read."})
			return
		}
		if why := h.crossSite(r); why != "" {
			h.log.Warn("console: refused a cross-site request", "why", why, "path", r.URL.Path,
				"origin", logsafe.Truncate(r.Header.Get("Origin"), 100), "secFetchSite", logsafe.Truncate(r.Header.Get("Sec-Fetch-Site"), 20))
			h.render(w, r, http.StatusForbidden, nil, "message", view{Title: "Forbidden", Message: "This request did not come from the console's own page."})
			return
		}
		s, ok := h.authorize(w, r)
		if !ok {
			return
		}
		if tok := r.PostForm.Get("csrf"); tok == "" || len(tok) > 128 || subtle.ConstantTimeCompare([]byte(tok), []byte(s.CSRF)) != 1 {
			h.log.Warn("console: refused a request without this session's CSRF token", "path", r.URL.Path, "sub", s.Sub)
			h.render(w, r, http.StatusForbidden, nil, "message", view{Title: "Forbidden", Message: "The form has expired. Go back, reload the page and try again."})
			return
		}
		f(w, r, s)
	}
}

// crossSite says why a POST is not from the console's own pages ("" if it
// is); see sameorigin.Check.
func (h *Handler) crossSite(r *http.Request) string {
	return sameorigin.Check(r, h.origin)
}
