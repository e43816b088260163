package oidcflow

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"

	"github.com/edgepass/edgepass/daemon/session"
)

// maxFormBody bounds POST bodies of /logout and /backchannel-logout.
const maxFormBody = 64 << 10

// revokeSession ends one session everywhere (see session.Revoker); exp is
// when its tokens expire anyway, zero for a whole lifetime.
func (h *Handler) revokeSession(ctx context.Context, sid string, exp time.Time, kind string) error {
	return session.Revoker{Edge: h.opts.Edge, Store: h.opts.Store, Metrics: h.opts.Metrics}.Revoke(ctx, sid, exp, kind)
}

// logout handles GET|POST /logout?rd=: revoke, clear the cookie, then
// RP-initiated logout at the IdP when it offers an end_session_endpoint.
func (h *Handler) logout(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBody)
	returnTo := h.opts.DefaultRedirect
	if rd := r.FormValue("rd"); rd != "" {
		if u, ok := h.returnURL.Check(rd); ok {
			returnTo = u
		} else {
			h.log.Info("logout ignored a return URL outside the allowed domains", "rd", truncate(rd, 200))
		}
	}
	var sess *session.Session
	revokeFailed := false
	if c, err := r.Cookie(h.opts.CookieName); err == nil && c.Value != "" {
		sid, err := h.opts.Tokens.SessionID(c.Value)
		if err != nil {
			h.log.Info("logout: cookie is not a valid session token; clearing it", "err", err)
		} else {
			var exp time.Time // unknown: the edge revokes for a whole lifetime
			if sess, _, err = h.opts.Store.Get(ctx, sid); err == nil {
				exp = sess.ExpiresAt
			} else if !errors.Is(err, session.ErrNotFound) {
				h.log.Warn("logout: cannot read the session; revoking it anyway", "err", err)
			}
			if err := h.revokeSession(ctx, sid, exp, KindLogout); err != nil {
				h.log.Error("logout: cannot revoke the session", "err", err)
				revokeFailed = true
			} else {
				h.log.Info("logout", "sid", session.Short(sid))
			}
		}
	}
	http.SetCookie(w, &http.Cookie{
		Name:     h.opts.CookieName,
		Value:    "",
		Path:     "/",
		Domain:   h.opts.CookieDomain,
		MaxAge:   -1,
		Secure:   h.opts.CookieSecure,
		HttpOnly: true,
		SameSite: http.SameSiteLaxMode,
	})
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
			if sess != nil && sess.IDToken != "" {
				v.Set("id_token_hint", sess.IDToken)
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
		h.log.Info("logged-out: return URL outside session.allowedDomains ignored", "rd", truncate(rd, 200))
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
	// VerifyLogout checks signature, iss, aud, exp, jti, sub or sid present,
	// that the back-channel logout event is named and that no nonce is
	// present (an ID token replayed as a logout token); checkLogoutToken adds
	// what it leaves out (iat, the event's value).
	lt, err := p.verifier.VerifyLogout(h.idp.clientContext(ctx), raw)
	if err == nil {
		err = checkLogoutToken(lt, h.now())
	}
	if err != nil {
		h.log.Warn("back-channel logout: token rejected", "err", err)
		bclError(w, http.StatusBadRequest, "invalid_request", "logout token rejected")
		return
	}
	jti := lt.Issuer + "\x00" + lt.TokenID
	if !h.firstUse(jti) {
		h.log.Warn("back-channel logout: token replayed", "jti", truncate(lt.TokenID, 64))
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
	}
	if sid == "" {
		// Also covers tokens whose stored session is already gone.
		if err := h.opts.Edge.RevokeUser(ctx, sub, h.now()); err != nil {
			errs = append(errs, fmt.Errorf("publish revocation of user: %w", err))
		}
	}
	h.log.Info("back-channel logout", "sub", sub, "idpSid", truncate(sid, 64), "sessions", n)
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

// checkLogoutToken adds the checks of Back-Channel Logout 1.0 section 2.6
// that go-oidc's VerifyLogout does not make: iat is required and recent
// (which bounds how long a captured token can be replayed), and the event's
// value is a JSON object.
func checkLogoutToken(lt *oidc.LogoutToken, now time.Time) error {
	if lt.IssuedAt.IsZero() {
		return errors.New("logout token has no iat")
	}
	if lt.IssuedAt.After(now.Add(logoutTokenSkew)) {
		return fmt.Errorf("logout token iat %s is in the future", lt.IssuedAt.UTC().Format(time.RFC3339))
	}
	if now.Sub(lt.IssuedAt) > logoutTokenMaxAge {
		return fmt.Errorf("logout token iat %s is older than %s", lt.IssuedAt.UTC().Format(time.RFC3339), logoutTokenMaxAge)
	}
	var c struct {
		Events map[string]json.RawMessage `json:"events"`
	}
	if err := lt.Claims(&c); err != nil {
		return fmt.Errorf("logout token claims: %w", err)
	}
	ev := bytes.TrimSpace(c.Events[backchannelEvent])
	if len(ev) == 0 || ev[0] != '{' {
		return fmt.Errorf("logout token: events[%q] is not a JSON object", backchannelEvent)
	}
	return nil
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
