package oidcflow

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/edgepass/edgepass/daemon/events"
	"github.com/edgepass/edgepass/daemon/internal/logsafe"
	keyring "github.com/edgepass/edgepass/daemon/keys"
	"github.com/edgepass/edgepass/daemon/session"
	"golang.org/x/oauth2"
)

// login starts the authorization code flow: GET /login?rd=<return URL>.
func (h *Handler) login(w http.ResponseWriter, r *http.Request) {
	if h.rateLimited(w, r, "/login") {
		return
	}
	returnTo := h.opts.DefaultRedirect
	if rd := r.URL.Query().Get("rd"); rd != "" {
		// A return URL outside the allowed domains is an open-redirect
		// attempt or a missing session.allowedDomains entry: sign in anyway
		// and land on the default page.
		if u, ok := h.returnURL.Check(rd); ok {
			returnTo = u
		} else {
			h.log.Warn("login: return URL outside session.allowedDomains; using session.defaultRedirect", "rd", logsafe.Truncate(rd, 200))
		}
	}
	if n, looping := h.bounced(w, r, r.URL.Query().Get("rd")); looping {
		h.refuseLoop(w, returnTo, n)
		return
	}
	p, err := h.idp.get(r.Context())
	if err != nil {
		h.log.Error("login: identity provider unavailable", "err", err)
		h.fail(w, http.StatusBadGateway, ReasonDiscovery, "Sign-in unavailable",
			"The identity provider cannot be reached right now. Please try again in a moment.")
		return
	}
	binding := ""
	if c, err := r.Cookie(h.cookies.binding); err == nil && len(c.Value) == 43 { // a session.NewID
		binding = c.Value // reuse: several tabs may be logging in at once
	} else {
		binding = session.NewID()
	}
	now := h.now()
	st := loginState{State: rand.Text(), Nonce: rand.Text(), Verifier: oauth2.GenerateVerifier(),
		Binding: binding, ReturnTo: returnTo, Exp: now.Add(PendingTTL).UnixNano()}
	ck, err := h.sealState(st)
	if err != nil {
		h.log.Error("login: cannot store the login in a cookie", "err", err)
		h.fail(w, http.StatusInternalServerError, ReasonState, "Sign-in unavailable",
			"edgepass could not start the sign-in. Please try again in a moment.")
		return
	}
	h.trimStates(w, r, binding, now)
	http.SetCookie(w, ck)
	http.SetCookie(w, h.cookies.hostOnly(h.cookies.binding, h.cookies.bindingPath, binding, PendingTTL))
	noStore(w)
	http.Redirect(w, r, p.oauth.AuthCodeURL(st.State, oidc.Nonce(st.Nonce), oauth2.S256ChallengeOption(st.Verifier)), http.StatusFound)
}

// callback finishes the flow: GET /callback?code=&state=. Three steps,
// each answering the browser itself when it refuses: find the login the
// callback belongs to (takeLogin), verify the IdP's answer to it
// (verifyCallback), issue the session (issueSession).
func (h *Handler) callback(w http.ResponseWriter, r *http.Request) {
	if h.rateLimited(w, r, "/callback") {
		return
	}
	pl, code, ok := h.takeLogin(w, r)
	if !ok {
		return
	}
	v, ok := h.verifyCallback(r.Context(), w, pl, code)
	if !ok {
		return
	}
	h.issueSession(w, r, v, pl.ReturnTo)
}

// takeLogin finds the pending login a callback answers: its state must
// name a login this browser started and has not used (its cookie is
// deleted now), and the IdP must have granted it a code.
func (h *Handler) takeLogin(w http.ResponseWriter, r *http.Request) (loginState, string, bool) {
	q := r.URL.Query()
	pl, err := h.takeState(w, r, q.Get("state"), h.now())
	if err != nil {
		switch {
		case errors.Is(err, errNoState):
			h.log.Debug("callback refused", "reason", err)
		case errors.Is(err, errStateExpired):
			h.log.Info("callback refused", "reason", err)
		default:
			h.log.Warn("callback refused", "reason", err)
		}
		h.fail(w, http.StatusBadRequest, ReasonState, "Sign-in expired",
			"This sign-in attempt has expired or was already used. Please start again.")
		return pl, "", false
	}
	if !h.boundTo(r, pl.Binding) {
		h.log.Warn("callback refused: state was issued to another browser")
		h.fail(w, http.StatusBadRequest, ReasonState, "Sign-in expired",
			"This sign-in attempt was not started in this browser. Please start again.")
		return pl, "", false
	}
	if e := q.Get("error"); e != "" {
		h.log.Info("identity provider refused the sign-in", "error", logsafe.Truncate(e, 100), "description", logsafe.Truncate(q.Get("error_description"), 200))
		h.fail(w, http.StatusForbidden, ReasonIdPError, "Sign-in refused",
			"The identity provider did not complete the sign-in.")
		return pl, "", false
	}
	code := q.Get("code")
	if code == "" {
		h.fail(w, http.StatusBadRequest, ReasonState, "Sign-in failed", "The identity provider's answer was incomplete. Please start again.")
		return pl, "", false
	}
	return pl, code, true
}

// verifiedLogin is the IdP's answer to one login once verifyCallback has
// checked it: who signed in (claims mapped, groups filtered, in a required
// group) and the tokens the session keeps for refresh and sign-out.
type verifiedLogin struct {
	id           *identity
	refreshToken string
	idToken      string // raw, the id_token_hint of RP-initiated logout
}

// verifyCallback verifies the IdP's answer to login pl (redeem: code
// exchange, ID token, claims) and that the user is in one of
// oidc.requiredGroups. Nothing is stored or issued yet.
func (h *Handler) verifyCallback(ctx context.Context, w http.ResponseWriter, pl loginState, code string) (*verifiedLogin, bool) {
	p, err := h.idp.get(ctx)
	if err != nil {
		h.log.Error("callback: identity provider unavailable", "err", err)
		h.fail(w, http.StatusBadGateway, ReasonDiscovery, "Sign-in unavailable",
			"The identity provider cannot be reached right now. Please try again in a moment.")
		return nil, false
	}
	id, tok, rawID, rerr := h.redeem(ctx, p, p.exchanger, code, pl.Verifier, pl.Nonce)
	if rerr != nil {
		h.refuseRedeemed(w, rerr)
		return nil, false
	}
	if !h.allowed(id.Groups) {
		h.log.Info("login refused: user is in none of the required groups", "sub", id.Subject, "user", id.Username)
		h.fail(w, http.StatusForbidden, ReasonForbidden, "Access denied",
			"Your account is not in a group that may use these sites. Ask an administrator for access.")
		return nil, false
	}
	return &verifiedLogin{id: id, refreshToken: tok.RefreshToken, idToken: rawID}, true
}

// refuseRedeemed answers the browser whose callback failed in redeem, by
// the step that failed.
func (h *Handler) refuseRedeemed(w http.ResponseWriter, re *redeemFailure) {
	switch re.step {
	case stepExchange:
		h.log.Warn("callback: code exchange failed", "err", re.err)
		status := http.StatusBadGateway
		var rt *oauth2.RetrieveError
		if errors.As(re.err, &rt) && rt.Response != nil && rt.Response.StatusCode < 500 {
			status = http.StatusBadRequest
		}
		h.fail(w, status, ReasonExchange, "Sign-in failed",
			"The identity provider did not accept this sign-in. Please start again.")
	case stepNoIDToken:
		h.log.Error("callback: token response has no id_token; is the openid scope configured?")
		h.fail(w, http.StatusBadGateway, ReasonIDToken, "Sign-in failed", "The identity provider's answer was incomplete.")
	case stepIDToken:
		h.log.Warn("callback: ID token refused", "err", re.err)
		reason := ReasonIDToken
		if errors.Is(re.err, errNonce) {
			reason = ReasonNonce
		}
		h.fail(w, http.StatusBadRequest, reason, "Sign-in failed", "The identity provider's answer could not be verified.")
	default:
		h.log.Error("callback: cannot complete the user's claims", "sub", re.sub, "err", re.err)
		h.fail(w, http.StatusBadGateway, ReasonUserinfo, "Sign-in failed",
			"The identity provider did not describe your account. Please try again in a moment.")
	}
}

// redeemStep names the step of redeem that failed.
type redeemStep int

const (
	stepExchange  redeemStep = iota + 1 // the IdP did not exchange the code
	stepNoIDToken                       // its token response has no id_token
	stepIDToken                         // the ID token did not verify (checkIDToken)
	stepClaims                          // the user's claims could not be completed (identify)
)

// redeemFailure is the step of redeem that failed, and why.
type redeemFailure struct {
	step redeemStep
	sub  string // the ID token's subject (stepClaims)
	err  error
}

// redeem is the IdP step of every sign-in, the edge login's callback and
// the console's alike: the code exchanges (ex: the sign-in's client and
// redirect URI) with the login's PKCE verifier, the ID token verifies
// (checkIDToken: signature, issuer, audience, expiry, the login's nonce,
// at_hash), and the claims map to a user (identify: userinfo fills what
// the ID token lacks). It returns who signed in, the IdP's tokens and the
// raw ID token, or the step that failed.
func (h *Handler) redeem(ctx context.Context, p *provider, ex codeExchanger, code, verifier, nonce string) (*identity, *oauth2.Token, string, *redeemFailure) {
	cctx := h.idp.clientContext(ctx)
	tok, err := ex.Exchange(cctx, code, oauth2.VerifierOption(verifier))
	if err != nil {
		return nil, nil, "", &redeemFailure{step: stepExchange, err: err}
	}
	rawID, _ := tok.Extra("id_token").(string)
	if rawID == "" {
		return nil, nil, "", &redeemFailure{step: stepNoIDToken, err: errors.New("no id_token")}
	}
	idt, claims, err := checkIDToken(cctx, p.verifier, rawID, nonce, tok.AccessToken)
	if err != nil {
		return nil, nil, "", &redeemFailure{step: stepIDToken, err: err}
	}
	id, err := h.identify(ctx, p, idt.Subject, claims, tok)
	if err != nil {
		return nil, nil, "", &redeemFailure{step: stepClaims, sub: idt.Subject, err: err}
	}
	return id, tok, rawID, nil
}

// errNonce: the ID token was issued for another login (or replayed).
var errNonce = errors.New("ID token nonce does not match this login")

// checkIDToken checks the ID token of a code exchange: the verifier's
// checks (signature, issuer, audience, expiry), then that it carries the
// login's nonce, matches the access token it came with (at_hash, when
// present) and names a subject. It returns the token and its claims.
func checkIDToken(ctx context.Context, v idTokenVerifier, raw, nonce, accessToken string) (*oidc.IDToken, claimSet, error) {
	idt, err := v.Verify(ctx, raw)
	if err != nil {
		return nil, nil, err
	}
	if subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(nonce)) != 1 {
		return nil, nil, errNonce
	}
	if idt.AccessTokenHash != "" {
		if err := idt.VerifyAccessToken(accessToken); err != nil {
			return nil, nil, fmt.Errorf("access token does not match at_hash: %w", err)
		}
	}
	var claims claimSet
	if err := idt.Claims(&claims); err != nil {
		return nil, nil, fmt.Errorf("ID token claims unreadable: %w", err)
	}
	if idt.Subject == "" {
		return nil, nil, errors.New("ID token has no sub")
	}
	return idt, claims, nil
}

// issueSession gives a verified login its session: the session record
// (newSession), the signed token (issueToken: with a groups fact when the
// groups do not fit a cookie), the stored session, the audit event and the
// cookie, then sends the browser to returnTo ("" shows a signed-in page).
func (h *Handler) issueSession(w http.ResponseWriter, r *http.Request, v *verifiedLogin, returnTo string) {
	ctx := r.Context()
	s, override := h.newSession(ctx, v)
	signed, err := h.issueToken(ctx, s, override)
	var gerr *groupsFactError
	if errors.As(err, &gerr) {
		h.log.Error("callback: the user's groups do not fit the session cookie and cannot reach the edges; not issuing a token with groups missing",
			"sub", s.Subject, "groups", len(s.Groups), "err", gerr.err)
		h.fail(w, http.StatusInternalServerError, ReasonGroups, "Sign-in failed",
			"edgepass could not publish your group memberships. Please try again in a moment.")
		return
	}
	if err == nil {
		s.KeyID = keyring.KeyIDOf(signed) // revoking that key ends this session
		err = h.opts.Store.Put(ctx, s)
	}
	if err != nil {
		h.log.Error("callback: cannot create the session", "sub", s.Subject, "err", err)
		h.fail(w, http.StatusInternalServerError, ReasonSession, "Sign-in failed",
			"edgepass could not create your session. Please try again in a moment.")
		return
	}
	h.opts.Metrics.LoginSucceeded()
	h.log.Info("login", "sub", s.Subject, "user", s.Username, "sid", session.Short(s.ID))
	le := sessionEvent(events.KindSessionCreated, s)
	le.Actor, le.ActorType, le.Source = userActor(s), events.ActorUser, events.SourceUser
	h.record(ctx, le)
	h.cookies.setSession(w, signed, h.opts.Lifetime)
	h.cookies.clearLegacy(w, r)
	noStore(w)
	if returnTo == "" {
		h.render(w, http.StatusOK, page{Title: "Signed in", Message: "You are signed in. You can close this page."})
		return
	}
	http.Redirect(w, r, returnTo, http.StatusFound)
}

// newSession is the session record of a verified login, with the groups
// it carries: an administrator's override wins over the IdP's groups; when
// the override cannot be read the IdP's groups are used, and the returned
// overrideState tells issueToken not to publish them.
func (h *Handler) newSession(ctx context.Context, v *verifiedLogin) (*session.Session, overrideState) {
	id := v.id
	groups, override := id.Groups, overrideNone
	if h.opts.Groups != nil {
		og, ok, err := h.opts.Groups.GroupsOverride(ctx, id.Subject)
		if err != nil {
			h.log.Warn("callback: cannot read the admin group override; using the IdP's groups", "sub", id.Subject, "err", err)
			override = overrideUnknown
		} else if ok {
			groups, override = og, overrideAdmin
		}
	}
	now := h.now().Truncate(time.Second)
	return &session.Session{
		ID:           session.NewID(),
		Subject:      id.Subject,
		Username:     id.Username,
		Email:        id.Email,
		Name:         id.Name,
		Groups:       groups,
		IssuedAt:     now,
		ExpiresAt:    now.Add(h.opts.Lifetime),
		RefreshToken: v.refreshToken,
		IDToken:      v.idToken,
		IdPSessionID: id.IdPSID,
	}, override
}

// boundTo reports whether the request carries the login binding cookie
// sealed into its login. A browser may send two (an older edgepass set it
// on /callback only), so each is compared.
func (h *Handler) boundTo(r *http.Request, binding string) bool {
	for i, c := range r.CookiesNamed(h.cookies.binding) {
		if i == maxSessionCookies {
			break
		}
		if subtle.ConstantTimeCompare([]byte(c.Value), []byte(binding)) == 1 {
			return true
		}
	}
	return false
}

// overrideState is what a login knows of an administrator's group override.
type overrideState int

const (
	overrideNone    overrideState = iota // none in force (or no GroupOverrider)
	overrideAdmin                        // in force: the session carries its groups
	overrideUnknown                      // could not be read
)

// groupsFactError means the groups fact a token needed was not published.
type groupsFactError struct{ err error }

func (e *groupsFactError) Error() string { return "publish groups fact: " + e.err.Error() }

// issueToken signs the session's token. When the user's groups do not all
// fit one cookie, it first publishes the whole list as a signed groups fact
// (its at, the publishing time, is at or after s.IssuedAt, so every edge
// gives this token, and the user's older ones, the whole list) and only
// then returns the token, carrying the groups that fit. An administrator's
// override is republished as the administrator's, so a login never turns
// it into an IdP list; when the override could not be read, nothing is
// published (it might be one) and the login fails.
func (h *Handler) issueToken(ctx context.Context, s *session.Session, override overrideState) (string, error) {
	signed, kept, err := h.signFitting(s)
	if err != nil || len(kept) == len(s.Groups) {
		return signed, err
	}
	switch override {
	case overrideUnknown:
		err = errors.New("the administrator's group override could not be read, and publishing the IdP's groups could replace it")
	case overrideAdmin:
		if ap, ok := h.opts.Edge.(AdminGroupsPublisher); ok {
			err = ap.SetAdminGroups(ctx, s.Subject, s.Groups)
		} else {
			err = errors.New("the edge publisher cannot republish an administrator's override (no SetAdminGroups)")
		}
	default:
		err = h.opts.Edge.SetGroups(ctx, s.Subject, s.Groups)
	}
	if err != nil {
		return "", &groupsFactError{err}
	}
	h.log.Info("login: the user's groups do not fit the session cookie; published them to the edges as a groups fact",
		"sub", s.Subject, "groups", len(s.Groups), "inToken", len(kept), "adminOverride", override == overrideAdmin)
	return signed, nil
}
