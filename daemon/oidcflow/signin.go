package oidcflow

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/url"
	"slices"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/edgepass/edgepass/daemon/internal/logsafe"
)

// A sign-in for another part of the daemon (the admin console): the same
// provider, client and claim mapping as the edge login, but its own
// callback (registered at the IdP as another redirect URI) and no edge
// session, cookie or refresh token. The caller keeps SignIn between the
// two steps (the console seals it into a cookie of its own).

// SignIn is a started sign-in: what FinishSignIn needs back.
type SignIn struct {
	State    string `json:"s"`
	Nonce    string `json:"n"`
	Verifier string `json:"v"`
}

// Person is who signed in, with groups mapped as for edge sessions
// (oidc.groupsClaim, oidc.groupsInclude).
type Person struct {
	Subject  string
	Username string
	Email    string
	Name     string
	Groups   []string
}

// Errors of FinishSignIn (wrapped).
var (
	ErrSignInState   = errors.New("sign-in state does not match")
	ErrSignInRefused = errors.New("the identity provider refused the sign-in")
	ErrSignInInvalid = errors.New("the identity provider's answer did not verify")
)

// signInConfig is the OAuth2 client for redirectURL, without
// offline_access: the caller keeps no refresh token.
func signInConfig(p *provider, redirectURL string) *oauth2.Config {
	cfg := *p.oauth
	cfg.RedirectURL = redirectURL
	cfg.Scopes = slices.DeleteFunc(slices.Clone(cfg.Scopes), func(s string) bool { return s == "offline_access" })
	return &cfg
}

// StartSignIn returns the IdP's authorization URL for a sign-in that comes
// back to redirectURL, and what FinishSignIn needs then (authorization
// code with PKCE, state and nonce).
func (h *Handler) StartSignIn(ctx context.Context, redirectURL string) (string, SignIn, error) {
	p, err := h.idp.get(ctx)
	if err != nil {
		return "", SignIn{}, err
	}
	st := SignIn{State: rand.Text(), Nonce: rand.Text(), Verifier: oauth2.GenerateVerifier()}
	u := signInConfig(p, redirectURL).AuthCodeURL(st.State, oidc.Nonce(st.Nonce), oauth2.S256ChallengeOption(st.Verifier))
	return u, st, nil
}

// FinishSignIn completes a sign-in from its callback's query: the state
// must be st's, the code is exchanged with st's PKCE verifier, and the ID
// token must verify (issuer, audience, signature, expiry, nonce, at_hash).
func (h *Handler) FinishSignIn(ctx context.Context, redirectURL string, q url.Values, st SignIn) (*Person, error) {
	if st.State == "" || subtle.ConstantTimeCompare([]byte(q.Get("state")), []byte(st.State)) != 1 {
		return nil, ErrSignInState
	}
	if e := q.Get("error"); e != "" {
		return nil, fmt.Errorf("%w: %s", ErrSignInRefused, logsafe.Truncate(e, 100))
	}
	code := q.Get("code")
	if code == "" {
		return nil, fmt.Errorf("%w: no code", ErrSignInInvalid)
	}
	p, err := h.idp.get(ctx)
	if err != nil {
		return nil, err
	}
	id, _, _, re := h.redeem(ctx, p, signInConfig(p, redirectURL), code, st.Verifier, st.Nonce)
	if re != nil {
		switch re.step {
		case stepExchange:
			return nil, fmt.Errorf("%w: code exchange: %v", ErrSignInInvalid, re.err)
		case stepNoIDToken, stepIDToken:
			return nil, fmt.Errorf("%w: %v", ErrSignInInvalid, re.err)
		}
		return nil, re.err
	}
	return &Person{Subject: id.Subject, Username: id.Username, Email: id.Email, Name: id.Name, Groups: id.Groups}, nil
}
