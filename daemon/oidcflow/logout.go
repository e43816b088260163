package oidcflow

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/edgepass/edgepass/daemon/events"
	"github.com/edgepass/edgepass/daemon/internal/logsafe"
	"github.com/edgepass/edgepass/daemon/internal/sameorigin"
	"github.com/edgepass/edgepass/daemon/session"
)

// maxFormBody bounds POST bodies of /logout and /backchannel-logout.
const maxFormBody = 64 << 10

// revokeSession ends one session everywhere (see session.Revoker); exp is
// when its tokens expire anyway, zero for a whole lifetime.
func (h *Handler) revokeSession(ctx context.Context, sid string, exp time.Time, kind string) error {
	return session.Revoker{Edge: h.opts.Edge, Store: h.opts.Store, Metrics: h.opts.Metrics}.Revoke(ctx, sid, exp, kind)
}

// Sign-out is a POST from the daemon's own pages: a GET, or a request
// another site makes the browser send (a link, an image, an auto-submitted
// form), never ends a session. GET /logout shows a confirmation page whose
// form posts back with a token sealed over the session id.

// csrfAAD binds a sign-out token to its purpose.
const csrfAAD = "edgepass sign-out form"

// csrfToken is the sign-out form's token for session sid: only this daemon
// (and its replicas, which share the sealing key) can make one, and it
// names one session.
func (h *Handler) csrfToken(sid string) string {
	return h.opts.Seal.Seal([]byte(sid), csrfAAD)
}

// csrfValid reports whether tok is the sign-out token of session sid.
func (h *Handler) csrfValid(tok, sid string) bool {
	if tok == "" || len(tok) > 512 {
		return false
	}
	got, err := h.opts.Seal.Open(tok, csrfAAD)
	return err == nil && subtle.ConstantTimeCompare(got, []byte(sid)) == 1
}

// logoutReturn checks a sign-out's return URL: outside the allowed
// domains it is replaced by session.defaultRedirect.
func (h *Handler) logoutReturn(rd string) string {
	if rd == "" {
		return h.opts.DefaultRedirect
	}
	if u, ok := h.returnURL.Check(rd); ok {
		return u
	}
	h.log.Info("logout ignored a return URL outside the allowed domains", "rd", logsafe.Truncate(rd, 200))
	return h.opts.DefaultRedirect
}

// formTargets are the CSP form-action sources of a page with the sign-out
// form: browsers check the redirects after the submission too, which go to
// the IdP's end_session endpoint and to the return URL.
func (h *Handler) formTargets(returnTo string) []string {
	out := []string{"'self'"}
	add := func(raw string) {
		u, err := url.Parse(raw)
		if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") || !cspHost(u.Host) {
			return
		}
		if o := sameorigin.Of(u); !slices.Contains(out, o) {
			out = append(out, o)
		}
	}
	add(h.opts.PublicURL)
	if p := h.idp.current(); p != nil {
		add(p.endSession)
	}
	add(returnTo)
	add(h.opts.DefaultRedirect)
	return out
}

// cspHost reports whether host (with port) is safe in a CSP source list.
func cspHost(host string) bool {
	for i := 0; i < len(host); i++ {
		c := host[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte(".-:[]", c) >= 0) {
			return false
		}
	}
	return true
}

// PrepareSignOutPage sets the headers of a daemon page that carries a
// sign-out form posting to /logout (the status page) and returns the form's
// csrf field value: "" when the request carries no valid session.
func (h *Handler) PrepareSignOutPage(w http.ResponseWriter, r *http.Request) string {
	pageHeaders(w, h.formTargets(h.opts.DefaultRedirect))
	if sids := h.sessionIDs(r); len(sids) > 0 {
		return h.csrfToken(sids[0])
	}
	return ""
}

// confirmLogout handles GET /logout?rd=: the confirmation page. It changes
// nothing, so any site may link to it.
func (h *Handler) confirmLogout(w http.ResponseWriter, r *http.Request) {
	h.renderConfirm(w, http.StatusOK, h.sessionIDs(r), h.logoutReturn(r.URL.Query().Get("rd")))
}

// renderConfirm shows the sign-out confirmation with a form for the
// browser's first session.
func (h *Handler) renderConfirm(w http.ResponseWriter, status int, sids []string, returnTo string) {
	p := page{
		Title:   "Sign out?",
		Message: "Sign out of edgepass in this browser: every site it protects will ask you to sign in again.",
		Form:    &signOutForm{Action: "logout", RD: returnTo},
	}
	if len(sids) > 0 {
		p.Form.CSRF = h.csrfToken(sids[0])
	} else {
		p.Message = "You have no edgepass session in this browser. Sign out anyway (also at the identity provider)?"
	}
	if returnTo != "" {
		p.Link, p.LinkText = returnTo, "Cancel"
	}
	h.renderWith(w, status, p, h.formTargets(returnTo))
}

// refusal says why a POST /logout must not end anything ("" = allowed).
func (h *Handler) refusal(r *http.Request, sids []string) string {
	if why := sameorigin.Check(r, h.publicOrigin); why != "" {
		return "not sent from the daemon's own page: " + why
	}
	if len(sids) == 0 {
		return "" // no session to end: clearing cookies and the IdP's own confirmation are harmless
	}
	tok := r.PostForm.Get("csrf")
	if tok == "" {
		return "no sign-out token"
	}
	for _, sid := range sids {
		if h.csrfValid(tok, sid) {
			return ""
		}
	}
	return "the sign-out token is not this session's"
}

// logout handles POST /logout (the confirmation form): revoke the
// browser's sessions, clear the cookie, then RP-initiated logout at the IdP
// when it offers an end_session_endpoint. A request that is not from the
// daemon's own page with the session's token ends nothing: it gets the
// confirmation page again (403).
func (h *Handler) logout(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBody)
	if err := r.ParseForm(); err != nil {
		h.log.Info("logout: unreadable form", "err", err)
		h.render(w, http.StatusBadRequest, page{Title: "Sign-out failed", Message: "The sign-out form could not be read. Please try again.",
			Link: "logout", LinkText: "Sign out"})
		return
	}
	returnTo := h.logoutReturn(r.FormValue("rd"))
	sids := h.sessionIDs(r)
	if why := h.refusal(r, sids); why != "" {
		h.log.Warn("logout refused: showing the confirmation page instead", "why", why,
			"origin", logsafe.Truncate(r.Header.Get("Origin"), 100), "secFetchSite", logsafe.Truncate(r.Header.Get("Sec-Fetch-Site"), 20))
		h.renderConfirm(w, http.StatusForbidden, sids, returnTo)
		return
	}
	var hint string // id_token_hint for the IdP
	revokeFailed := false
	for _, sid := range sids {
		var exp time.Time // unknown: the edge revokes for a whole lifetime
		who := &session.Session{ID: sid}
		if sess, _, err := h.opts.Store.Get(ctx, sid); err == nil {
			exp = sess.ExpiresAt
			who = sess
			if hint == "" {
				hint = sess.IDToken
			}
		} else if !errors.Is(err, session.ErrNotFound) {
			h.log.Warn("logout: cannot read the session; revoking it anyway", "err", err)
		}
		if err := h.revokeSession(ctx, sid, exp, KindLogout); err != nil {
			h.log.Error("logout: cannot revoke the session", "err", err)
			revokeFailed = true
		} else {
			h.log.Info("logout", "sid", session.Short(sid))
			e := sessionEvent(events.KindSessionRevoked, who)
			e.Actor, e.ActorType, e.Source, e.Reason = userActor(who), events.ActorUser, events.SourceUser, "signed out"
			h.record(ctx, e)
		}
	}
	h.cookies.clearSession(w, r)
	noStore(w)
	if revokeFailed {
		h.render(w, http.StatusBadGateway, page{
			Title:   "Sign-out incomplete",
			Message: "You are signed out in this browser, but edgepass could not end the session on every server. Please try again.",
			Link:    r.URL.Path, LinkText: "Try again",
		})
		return
	}
	if p, err := h.idp.get(ctx); err != nil {
		h.log.Warn("logout: identity provider unavailable; skipping logout there", "err", err)
	} else if p.endSession != "" {
		if u, err := url.Parse(p.endSession); err == nil {
			v := u.Query()
			if hint != "" {
				v.Set("id_token_hint", hint)
			}
			v.Set("client_id", h.opts.ClientID)
			// Providers accept only registered post-logout URIs (exact match),
			// so the IdP returns to one fixed daemon page and the return URL
			// travels in state, checked again there.
			v.Set("post_logout_redirect_uri", h.loggedOutURL())
			if returnTo != "" {
				v.Set("state", returnTo)
			}
			u.RawQuery = v.Encode()
			http.Redirect(w, r, u.String(), http.StatusFound)
			return
		}
		h.log.Warn("logout: end_session_endpoint from discovery is not a URL", "url", p.endSession)
	}
	if returnTo != "" {
		http.Redirect(w, r, returnTo, http.StatusFound)
		return
	}
	h.render(w, http.StatusOK, page{Title: "Signed out", Message: "You are signed out."})
}

// loggedOutURL is the post_logout_redirect_uri to register at the IdP.
func (h *Handler) loggedOutURL() string {
	return strings.TrimSuffix(h.opts.PublicURL, "/") + LoggedOutPath
}

// loggedOut handles GET /logged-out, where the IdP sends the browser after
// RP-initiated logout: on to the return URL carried in state if allowed,
// else a signed-out page.
func (h *Handler) loggedOut(w http.ResponseWriter, r *http.Request) {
	noStore(w)
	if rd := r.URL.Query().Get("state"); rd != "" {
		if u, ok := h.returnURL.Check(rd); ok {
			http.Redirect(w, r, u, http.StatusFound)
			return
		}
		h.log.Info("logged-out: return URL outside session.allowedDomains ignored", "rd", logsafe.Truncate(rd, 200))
	}
	h.render(w, http.StatusOK, page{Title: "Signed out", Message: "You are signed out."})
}

// backchannelLogout handles POST /backchannel-logout (OIDC Back-Channel
// Logout 1.0): the IdP ends sessions server to server.
func (h *Handler) backchannelLogout(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	noStore(w)
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBody)
	if err := r.ParseForm(); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			bclError(w, http.StatusRequestEntityTooLarge, "invalid_request", "body too large")
			return
		}
		bclError(w, http.StatusBadRequest, "invalid_request", "malformed form body")
		return
	}
	raw := r.PostForm.Get("logout_token")
	if raw == "" {
		bclError(w, http.StatusBadRequest, "invalid_request", "logout_token is required")
		return
	}
	p, err := h.idp.get(ctx)
	if err != nil {
		h.log.Error("back-channel logout: identity provider unavailable", "err", err)
		bclError(w, http.StatusServiceUnavailable, "temporarily_unavailable", "cannot verify the logout token now")
		return
	}
	lt, err := verifyLogoutToken(h.idp.clientContext(ctx), p.keys, p.algs, h.opts.Issuer, h.opts.ClientID, raw, h.now())
	if err != nil {
		h.log.Warn("back-channel logout: token rejected", "err", err)
		bclError(w, http.StatusBadRequest, "invalid_request", "logout token rejected")
		return
	}
	h.noteOmittedClaims(lt)
	jti := lt.Issuer + "\x00" + lt.TokenID
	if !h.firstUse(jti) {
		h.log.Warn("back-channel logout: token replayed", "jti", logsafe.Truncate(lt.TokenID, 64))
		bclError(w, http.StatusBadRequest, "invalid_request", "logout token already used")
		return
	}
	if err := h.logoutIdPSession(ctx, lt.Subject, lt.SessionID); err != nil {
		h.forgetUse(jti) // let the IdP retry
		h.log.Error("back-channel logout: revocation failed", "err", err)
		bclError(w, http.StatusServiceUnavailable, "temporarily_unavailable", "revocation failed; retry later")
		return
	}
	w.WriteHeader(http.StatusOK)
}

// logoutIdPSession revokes the sessions a logout token names: those with the
// IdP session id sid (of subject sub when given), or all of sub's sessions.
func (h *Handler) logoutIdPSession(ctx context.Context, sub, sid string) error {
	all, err := h.opts.Store.List(ctx, sub)
	if err != nil {
		return fmt.Errorf("list sessions: %w", err)
	}
	var errs []error
	n := 0
	for _, s := range all {
		if sid != "" && s.IdPSessionID != sid {
			continue
		}
		if err := h.revokeSession(ctx, s.ID, s.ExpiresAt, KindBackchannel); err != nil {
			errs = append(errs, err)
			continue
		}
		n++
		h.record(ctx, h.idpEvent(sessionEvent(events.KindSessionRevoked, &s), events.SourceBackchannel, "signed out at the identity provider"))
	}
	if sid == "" {
		// Also covers tokens whose stored session is already gone.
		if err := h.opts.Edge.RevokeUser(ctx, sub, h.now()); err != nil {
			errs = append(errs, fmt.Errorf("publish revocation of user: %w", err))
		} else {
			e := events.Event{Kind: events.KindUserRevoked, Subject: sub}
			if len(all) > 0 {
				e = sessionEvent(events.KindUserRevoked, &all[0])
				e.SessionID = ""
			}
			h.record(ctx, h.idpEvent(e, events.SourceBackchannel, "every session ended at the identity provider"))
		}
	}
	h.log.Info("back-channel logout", "sub", sub, "idpSid", logsafe.Truncate(sid, 64), "sessions", n)
	return errors.Join(errs...)
}

// Logout token freshness: a token whose iat is older than
// logoutTokenMaxAge, or further than logoutTokenSkew ahead of this clock, is
// refused, so a jti only needs remembering for jtiMemory.
const (
	logoutTokenMaxAge = 10 * time.Minute
	logoutTokenSkew   = time.Minute
	jtiMemory         = logoutTokenMaxAge + 2*logoutTokenSkew
)

// backchannelEvent is the member of the events claim that makes a JWT a
// back-channel logout token.
const backchannelEvent = "http://schemas.openid.net/event/backchannel-logout"

// noteOmittedClaims says once per provider and set of claims which claims
// its logout tokens leave out, so operators know why a token without exp or
// sub was accepted.
func (h *Handler) noteOmittedClaims(lt *logoutToken) {
	if len(lt.Omitted) == 0 {
		return
	}
	key := lt.Issuer + "\x00" + strings.Join(lt.Omitted, ",")
	if _, seen := h.omittedNoted.LoadOrStore(key, true); seen {
		return
	}
	h.log.Info("back-channel logout: the provider's logout tokens omit optional claims; accepted (iat bounds their age, jti their reuse)",
		"issuer", lt.Issuer, "omitted", strings.Join(lt.Omitted, ","))
}

// firstUse records a logout token id and reports whether it was new; the
// check and the record are one step, so two concurrent deliveries of the
// same token cannot both pass.
func (h *Handler) firstUse(jti string) bool {
	h.jtiMu.Lock()
	defer h.jtiMu.Unlock()
	if h.seenJTI.Contains(jti) {
		return false
	}
	h.seenJTI.Add(jti, struct{}{})
	return true
}

func (h *Handler) forgetUse(jti string) {
	h.jtiMu.Lock()
	defer h.jtiMu.Unlock()
	h.seenJTI.Remove(jti)
}

// bclError answers as Back-Channel Logout 1.0 section 2.8 asks.
func bclError(w http.ResponseWriter, status int, code, desc string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": code, "error_description": desc})
}
