package oidcflow

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/edgepass/edgepass/daemon/session"
)

// maxFormBody bounds POST bodies of /logout and /backchannel-logout.
const maxFormBody = 64 << 10

// revokeSession ends one session everywhere: the edge refuses its tokens,
// then the stored session (and its refresh token) is deleted. exp is when
// its tokens expire anyway.
func (h *Handler) revokeSession(ctx context.Context, sid string, exp time.Time, kind string) error {
	if err := h.opts.Edge.RevokeSession(ctx, sid, exp); err != nil {
		return fmt.Errorf("publish revocation of session %s…: %w", sid[:min(8, len(sid))], err)
	}
	if err := h.opts.Store.Delete(ctx, sid); err != nil {
		return fmt.Errorf("delete session %s…: %w", sid[:min(8, len(sid))], err)
	}
	h.opts.Metrics.Revoked(kind)
	return nil
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
			exp := h.now().Add(h.opts.Lifetime)
			if sess, err = h.opts.Store.Get(ctx, sid); err != nil {
				h.log.Warn("logout: cannot read the session; revoking it anyway", "err", err)
			} else if sess != nil {
				exp = sess.ExpiresAt
			}
			if err := h.revokeSession(ctx, sid, exp, KindLogout); err != nil {
				h.log.Error("logout: cannot revoke the session", "err", err)
				revokeFailed = true
			} else {
				h.log.Info("logout", "sid", sid[:min(8, len(sid))])
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
			if returnTo != "" {
				v.Set("post_logout_redirect_uri", returnTo)
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
	// VerifyLogout checks signature, iss, aud, exp, jti, the back-channel
	// logout event, sub or sid present, and that no nonce is present (an ID
	// token replayed as a logout token).
	lt, err := p.verifier.VerifyLogout(h.idp.clientContext(ctx), raw)
	if err != nil {
		h.log.Warn("back-channel logout: token rejected", "err", err)
		bclError(w, http.StatusBadRequest, "invalid_request", "logout token rejected")
		return
	}
	jti := lt.Issuer + "\x00" + lt.TokenID
	if h.seenJTI.Contains(jti) {
		h.log.Warn("back-channel logout: token replayed", "jti", truncate(lt.TokenID, 64))
		bclError(w, http.StatusBadRequest, "invalid_request", "logout token already used")
		return
	}
	h.seenJTI.Add(jti, struct{}{})
	if err := h.logoutIdPSession(ctx, lt.Subject, lt.SessionID); err != nil {
		h.seenJTI.Remove(jti) // let the IdP retry
		h.log.Error("back-channel logout: revocation failed", "err", err)
		bclError(w, http.StatusServiceUnavailable, "temporarily_unavailable", "revocation failed; retry later")
		return
	}
	w.WriteHeader(http.StatusOK)
}

// logoutIdPSession revokes the sessions a logout token names: those with the
// IdP session id sid (of subject sub when given), or all of sub's sessions.
func (h *Handler) logoutIdPSession(ctx context.Context, sub, sid string) error {
	all, err := h.opts.Store.List(ctx)
	if err != nil {
		return fmt.Errorf("list sessions: %w", err)
	}
	var errs []error
	n := 0
	for _, s := range all {
		match := false
		if sid != "" {
			match = s.IdPSessionID == sid && (sub == "" || s.Subject == sub)
		} else {
			match = s.Subject == sub
		}
		if !match {
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

// bclError answers as Back-Channel Logout 1.0 section 2.8 asks.
func bclError(w http.ResponseWriter, status int, code, desc string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": code, "error_description": desc})
}
