package edgepass

import (
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edgepass/edgepass/plugin/edgestate"
	"github.com/edgepass/edgepass/plugin/idptoken"
	"github.com/edgepass/edgepass/plugin/policy"
	"github.com/edgepass/edgepass/plugin/token"
)

// IdP access tokens (bearer): scripts and services that hold a JWT access
// token from the identity provider (client credentials, device flow, a
// user's token for an API) call APIs behind edgepass with it. The edge
// verifies it against the IdP's keys, which the daemon publishes in the
// anchor-signed keys fact (never fetched by the edge: no I/O on the request
// path, and whoever writes NATS cannot inject a key), checks iss, aud and
// exp, and maps the claims to an identity the way the daemon maps a login.
// The decision then is the usual one: user revocations and group overrides
// of the same sub apply, and allowedGroups decides. Off by default; only as
// Authorization: Bearer.

// idpSettings is a middleware's validated bearer block.
type idpSettings struct {
	issuer      string // "" = the issuer the daemon publishes
	audiences   []string
	groupsClaim []idptoken.ClaimPath // nil = the daemon's
}

// compileBearer validates the bearer block into s.
func compileBearer(cfg *Config, s *settings) error {
	b := cfg.Bearer
	auds := policy.SplitList(b.Audiences)
	if !b.Enabled {
		if len(auds) > 0 || strings.TrimSpace(b.Issuer) != "" || strings.TrimSpace(b.GroupsClaim) != "" {
			return fieldErr("bearer.enabled", "set enabled: true to accept the IdP's access tokens (off by default)")
		}
		return nil
	}
	if len(auds) == 0 {
		return fieldErr("bearer.audiences", "required with bearer.enabled: the aud values of access tokens this API accepts (the IdP's resource or API identifier)")
	}
	for _, a := range auds {
		if a == s.verifier.Audience || a == token.ServiceAudience {
			return fieldErr("bearer.audiences", "%q is the audience of edgepass's own tokens", a)
		}
	}
	if len(s.nats.URLs) == 0 {
		return fieldErr("bearer.enabled", "needs nats.urls: the IdP's keys reach the edge from the daemon, over NATS")
	}
	is := &idpSettings{issuer: strings.TrimSpace(b.Issuer), audiences: auds}
	if gc := strings.TrimSpace(b.GroupsClaim); gc != "" {
		if strings.ContainsAny(gc, "[]()\"' ") || strings.HasPrefix(gc, ".") || strings.HasSuffix(gc, ".") || strings.Contains(gc, "..") {
			return fieldErr("bearer.groupsClaim", "%q: a claim name or names separated by dots (realm_access.roles)", gc)
		}
		is.groupsClaim = []idptoken.ClaimPath{idptoken.DottedPath(gc)}
	}
	s.idp = is
	return nil
}

// idpView is the IdP's keys and claim mapping parsed from one keys fact.
type idpView struct {
	src     *edgestate.IdPKeys
	keys    *idptoken.Keys
	mapping idptoken.Mapping
}

// idpViews caches the parsed view of each published IdP fact (they change
// rarely; every middleware of a state shares one).
var (
	idpViewsMu sync.Mutex
	idpViews   atomic.Value // *idpView: the latest parsed
)

// idpViewFor returns the parsed view of the state's IdP fact (nil: none yet,
// or its JWKS has no usable key).
func idpViewFor(src *edgestate.IdPKeys) *idpView {
	if src == nil {
		return nil
	}
	if v, _ := idpViews.Load().(*idpView); v != nil && v.src == src {
		return v
	}
	idpViewsMu.Lock()
	defer idpViewsMu.Unlock()
	keys, err := idptoken.ParseJWKS(src.JWKS)
	if err != nil {
		bearerLog.log("the IdP keys the daemon published are unusable: " + err.Error())
		return nil
	}
	v := &idpView{src: src, keys: keys, mapping: idptoken.Mapping{Groups: src.GroupsClaim, Users: src.UserClaims, Include: src.GroupsInclude}}
	idpViews.Store(v)
	return v
}

// bearerLog reports bearer-token configuration problems.
var bearerLog = &logThrottle{prefix: "bearer"}

// idpCandidate reports a session-token verification failure that may be an
// IdP access token: another algorithm, a key the daemon does not have, an
// at+jwt header, or a size only access tokens reach.
func idpCandidate(err error) bool {
	return errors.Is(err, token.ErrAlgorithm) || errors.Is(err, token.ErrUnknownKey) ||
		errors.Is(err, token.ErrMalformed) || errors.Is(err, token.ErrTooLarge)
}

// idpSource is the IdP fact decisions are made with now (nil: none).
func (m *Middleware) idpSource() *edgestate.IdPKeys {
	if m.state == nil {
		return nil
	}
	return m.state.IdP()
}

// verifyIdP verifies raw as an IdP access token and decides on it.
func (m *Middleware) verifyIdP(raw string, version, now int64) (*decision, string) {
	view := idpViewFor(m.idpSource())
	if view == nil {
		bearerLog.log("no IdP keys from the daemon yet: access tokens are refused until the daemon publishes them (it fetches the IdP's jwks_uri)")
		return nil, policy.BadToken
	}
	issuer := m.s.idp.issuer
	if issuer == "" {
		issuer = view.src.Issuer
	} else if issuer != view.src.Issuer {
		bearerLog.log("bearer.issuer " + issuer + " is not the daemon's IdP " + view.src.Issuer + ": its tokens cannot be verified here")
		return nil, policy.WrongIssuer
	}
	claims, err := idptoken.Verify(raw, view.keys, idptoken.Options{Issuer: issuer, Audiences: m.s.idp.audiences, Skew: m.s.verifier.Skew}, time.Unix(now, 0))
	if err != nil {
		return nil, policy.TokenReason(err)
	}
	mapping := view.mapping
	if m.s.idp.groupsClaim != nil {
		mapping.Groups = m.s.idp.groupsClaim
	}
	c := mapping.Identity(claims).Claims()
	e := m.build(raw, c, m.keys(), token.SubjectKey(c.Subject), version, now)
	e.idp = view.src
	m.cache.put(strings.Clone(raw), e, now)
	return e, ""
}
