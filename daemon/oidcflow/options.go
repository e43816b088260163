package oidcflow

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/edgepass/edgepass/daemon/events"
	"github.com/edgepass/edgepass/daemon/seal"
	"github.com/edgepass/edgepass/daemon/session"
	"github.com/edgepass/edgepass/plugin/policy"
)

// SessionStore is where sessions live so that every daemon replica sees
// them; *session.Store implements it.
type SessionStore interface {
	// Put creates or replaces the session with s.ID.
	Put(ctx context.Context, s *session.Session) error
	// Get returns the session and its revision, or session.ErrNotFound.
	Get(ctx context.Context, id string) (*session.Session, uint64, error)
	// Update replaces the session only while it is still at revision rev;
	// session.ErrConflict means another replica changed or deleted it since.
	Update(ctx context.Context, s *session.Session, rev uint64) (uint64, error)
	// Delete removes the session; deleting a missing session is not an error.
	Delete(ctx context.Context, id string) error
	// List returns the live sessions; subject != "" keeps only that user's.
	List(ctx context.Context, subject string) ([]session.Session, error)
}

// Signer turns a session into the edge's session token (a compact JWS, see
// docs/contracts.md): iss = publicURL, aud = "edgepass", sub = Subject,
// sid = ID, iat = IssuedAt, exp = ExpiresAt, email, name,
// preferred_username = Username, groups = Groups. The core implements it with
// token.Sign and the current signing key.
type Signer interface {
	Sign(s *session.Session) (string, error)
}

// TokenVerifier lets logout find the session behind a cookie without trusting
// an unsigned sid (anyone could otherwise log out someone else's session).
type TokenVerifier interface {
	// SessionID returns the sid of a token this daemon signed (signature,
	// issuer and audience checked). It may accept an expired token: signing
	// out with an old cookie should still delete the stored session.
	SessionID(raw string) (string, error)
}

// EdgePublisher pushes facts to every Traefik replica (the edge KV bucket).
type EdgePublisher interface {
	// RevokeSession refuses tokens with this sid until exp.
	RevokeSession(ctx context.Context, sid string, exp time.Time) error
	// RevokeUser refuses the subject's tokens issued at or before before.
	RevokeUser(ctx context.Context, subject string, before time.Time) error
	// SetGroups replaces the subject's groups in tokens issued until now.
	SetGroups(ctx context.Context, subject string, groups []string) error
}

// GroupOverrider is optional: it reports groups an administrator set with
// PUT /api/v1/users/{sub}/groups, which then win over the IdP's groups at
// login and are not overwritten by periodic refresh.
type GroupOverrider interface {
	GroupsOverride(ctx context.Context, subject string) (groups []string, ok bool, err error)
}

// AdminGroupsPublisher is optional on EdgePublisher (*edgepub.Publisher
// has it): a login whose administrator's override does not fit a cookie
// republishes the override as the administrator's, so it stays an override.
type AdminGroupsPublisher interface {
	SetAdminGroups(ctx context.Context, subject string, groups []string) error
}

// Sealer encrypts and authenticates small values bound to a purpose (the
// aad); *seal.Key and *keys.LoginStateSealer implement it. The flow seals
// the sign-out form's token, the login-loop cookie and pending logins with
// it, so every replica must share the keys: what one replica sealed is
// then accepted by another.
type Sealer interface {
	Seal(plaintext []byte, aad string) string
	Open(sealed, aad string) ([]byte, error)
}

// Metrics receives the flow's events; *admin.Metrics implements it.
type Metrics interface {
	LoginSucceeded()
	// LoginFailed takes one of the Reason* constants (a bounded label set).
	LoginFailed(reason string)
	// Revoked takes one of the Kind* constants.
	Revoked(kind string)
	// GroupsCapped counts a user's group list cut to edgepub's limits;
	// limit is one of the Limit* constants.
	GroupsCapped(limit string)
}

// Limits a group list was cut at, reported to Metrics.GroupsCapped.
const (
	LimitCount = "count" // edgepub.MaxGroups
	LimitBytes = "bytes" // edgepub.MaxGroupBytes
	LimitName  = "name"  // edgepub.MaxGroupName
)

// Login failure reasons reported to Metrics.LoginFailed.
const (
	ReasonDiscovery = "discovery"
	ReasonState     = "state"
	ReasonIdPError  = "idp_error"
	ReasonExchange  = "exchange"
	ReasonIDToken   = "id_token"
	ReasonNonce     = "nonce"
	ReasonUserinfo  = "userinfo"
	ReasonForbidden = "forbidden_group"
	ReasonSession   = "session"
	// ReasonLoop: the browser kept coming back to /login with a session
	// issued seconds ago (an edge refuses it); no more sessions are issued.
	ReasonLoop = "login_loop"
	// ReasonRateLimited: a client went over LoginRateLimit on /login or
	// /callback and was answered 429.
	ReasonRateLimited = "rate_limited"
	// ReasonGroups: the user's groups did not fit the token and the groups
	// fact carrying them could not be published, so no token was issued.
	ReasonGroups = "groups"
)

// Revocation kinds reported to Metrics.Revoked: who ended the session.
const (
	KindLogout      = "logout"
	KindBackchannel = "backchannel"
	KindRefresh     = "refresh"
)

// Options configures the relying party; New documents which fields are
// required. Field names follow the daemon configuration (oidc.*, session.*).
type Options struct {
	// PublicURL is the daemon's external base URL; the redirect URI
	// registered at the IdP is PublicURL + "/callback".
	PublicURL string

	Issuer       string   // oidc.issuer (required)
	ClientID     string   // oidc.clientID (required)
	ClientSecret string   // oidc.clientSecret ("" for a public client using PKCE only)
	Scopes       []string // oidc.scopes; "openid" is added when missing. Default: openid profile email
	// GroupsClaims (oidc.groupsClaim) are claim paths (package claimpath:
	// realm_access.roles, resource_access["my-client"].roles,
	// ["urn:zitadel:iam:org:project:roles"].keys()) into the ID token and
	// userinfo claims; the groups of every path present are merged in path
	// order without duplicates, then GroupsInclude applies. Default [groups].
	// GroupsClaim, a single path, is the older form, used when GroupsClaims
	// is empty.
	GroupsClaims []string
	GroupsClaim  string
	// UserClaims (oidc.userClaims) name the user (the token's
	// preferred_username, the edges' user): the first path holding a
	// string wins, "email" only when not marked unverified, and the sub
	// when none does. Default DefaultUserClaims (preferred_username, email,
	// sub). UsernameClaim, the older form, means [UsernameClaim, email, sub]
	// when UserClaims is empty.
	UserClaims    []string
	UsernameClaim string
	// claims is GroupsClaims and UserClaims parsed (by withDefaults).
	claims *claimMapping
	// RequiredGroups: when non-empty, a user must be in at least one of
	// them, at login and at every refresh.
	RequiredGroups []string
	// GroupsInclude (oidc.groupsInclude) keeps only the IdP groups edges
	// need: exact names, or prefixes ending in "*"; empty keeps all. It
	// applies at login and refresh before anything else (requiredGroups,
	// limits, the token), so it must keep every required group.
	GroupsInclude []string

	Lifetime time.Duration // session.lifetime, default 12h
	// CookieName is session.cookieName (default edgepass_session), the base
	// name: with CookieSecure and no CookieDomain the cookie is
	// "__Host-"+CookieName (policy.HostCookieName), which edges accept too.
	CookieName   string
	CookieDomain string // session.cookieDomain, "" = host-only
	CookieSecure bool   // session.cookieSecure
	// AllowedDomains are the hosts a return URL may point at: exact host
	// names / IP literals, or "*.example.com" for any subdomain.
	AllowedDomains []string
	// DefaultRedirect is where a browser goes when rd is absent or not
	// allowed; "" shows a small signed-in / signed-out page instead.
	DefaultRedirect string
	// RefreshInterval is how often RunRefresh re-checks sessions at the IdP;
	// 0 disables it.
	RefreshInterval time.Duration

	Store  SessionStore  // required
	Signer Signer        // required
	Tokens TokenVerifier // required
	Edge   EdgePublisher // required
	Groups GroupOverrider
	// Seal protects the sign-out form's token and the login-loop cookie;
	// give every replica the same key (serve passes keys.encryptionKeyFile's).
	// nil: a random key of this process, which other replicas do not know.
	Seal Sealer
	// StateSeal seals pending logins into the browser's login-state
	// cookies, so any replica completes any callback and no replica keeps
	// memory per pending login; serve passes keys.Ring.LoginStateSealer()
	// (shared through the key ring, rotated). nil: Seal.
	StateSeal Sealer
	// Metrics and Logger are optional.
	Metrics Metrics
	Logger  *slog.Logger
	// Events, optional, receives the audit trail's events of the flow:
	// sign-ins and sign-outs (source user), back-channel logouts and
	// refresh revocations and group changes (actor the IdP).
	Events events.Recorder
	// PendingLogins bounds the logins one browser has started and not
	// finished (several tabs signing in at once): starting one more drops
	// the oldest. Default DefaultPendingLogins; each may take PendingTTL.
	PendingLogins int
	// LoginRateLimit is how many requests per minute one client may send to
	// each of /login and /callback (session.loginRateLimit); 0 = no limit.
	// LoginRateBurst is how many it may send at once (default a third of
	// the limit, at least 1).
	LoginRateLimit int
	LoginRateBurst int
	// TrustedProxies (trustedProxies: CIDRs or addresses) are the peers
	// whose X-Forwarded-For names the client for the rate limit (its last
	// hop not itself a trusted proxy). nil: DefaultTrustedProxies, loopback
	// (Traefik in front); an empty list trusts no peer.
	TrustedProxies []string
}

// Defaults for Options fields left empty.
const (
	DefaultLifetime    = 12 * time.Hour
	DefaultCookieName  = policy.DefaultCookieName
	DefaultGroupsClaim = "groups"
	// DefaultPendingLogins is how many logins one browser may have in
	// flight (tabs signing in at once).
	DefaultPendingLogins = 4
)

// DefaultTrustedProxies are the peers trusted for X-Forwarded-For when
// Options.TrustedProxies is empty: loopback, where Traefik usually runs.
var DefaultTrustedProxies = []string{"127.0.0.0/8", "::1/128"}

// PendingTTL is how long a login may take between /login and /callback.
const PendingTTL = 10 * time.Minute

// idpTimeout bounds each request to the IdP.
const idpTimeout = 10 * time.Second

// withDefaults fills empty fields and checks required ones, naming the
// configuration key to fix.
func (o Options) withDefaults() (Options, error) {
	var errs []error
	req := func(ok bool, what string) {
		if !ok {
			errs = append(errs, fmt.Errorf("%s is required", what))
		}
	}
	req(o.PublicURL != "", "publicURL")
	req(o.Issuer != "", "oidc.issuer")
	req(o.ClientID != "", "oidc.clientID")
	req(o.Store != nil, "Options.Store")
	req(o.Signer != nil, "Options.Signer")
	req(o.Tokens != nil, "Options.Tokens")
	req(o.Edge != nil, "Options.Edge")
	if o.PublicURL != "" {
		u, err := url.Parse(o.PublicURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("publicURL %q must be an absolute http(s) URL", o.PublicURL))
		}
	}
	if o.Issuer != "" {
		u, err := url.Parse(o.Issuer)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("oidc.issuer %q must be an absolute http(s) URL", o.Issuer))
		}
	}
	if o.DefaultRedirect != "" {
		u, err := url.Parse(o.DefaultRedirect)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("session.defaultRedirect %q must be an absolute http(s) URL", o.DefaultRedirect))
		}
	}
	if o.Lifetime < 0 || o.RefreshInterval < 0 || o.PendingLogins < 0 {
		errs = append(errs, errors.New("durations and sizes must not be negative"))
	}
	if o.LoginRateLimit < 0 || o.LoginRateBurst < 0 {
		errs = append(errs, fmt.Errorf("session.loginRateLimit (%d) and session.loginRateBurst (%d) must not be negative; 0 turns the limit off", o.LoginRateLimit, o.LoginRateBurst))
	}
	groupsClaims, userClaims := o.claimPaths()
	if m, err := newClaimMapping(groupsClaims, userClaims); err != nil {
		errs = append(errs, err)
	} else {
		o.claims = m
	}
	if inc, err := newGroupFilter(o.GroupsInclude); err != nil {
		errs = append(errs, err)
	} else {
		for _, g := range o.RequiredGroups {
			if !inc.keeps(g) {
				errs = append(errs, fmt.Errorf("oidc.requiredGroups %q is not kept by oidc.groupsInclude %q, so nobody could sign in; add it to oidc.groupsInclude", g, o.GroupsInclude))
			}
		}
	}
	if len(errs) > 0 {
		return o, fmt.Errorf("oidcflow: %w", errors.Join(errs...))
	}
	o.PublicURL = strings.TrimSuffix(o.PublicURL, "/")
	if len(o.Scopes) == 0 {
		o.Scopes = []string{"openid", "profile", "email"}
	}
	if !slices.Contains(o.Scopes, "openid") {
		o.Scopes = append([]string{"openid"}, o.Scopes...)
	}
	o.GroupsClaims, o.UserClaims = groupsClaims, userClaims
	if o.Lifetime == 0 {
		o.Lifetime = DefaultLifetime
	}
	if o.CookieName == "" {
		o.CookieName = DefaultCookieName
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Metrics == nil {
		o.Metrics = noMetrics{}
	}
	if o.PendingLogins == 0 {
		o.PendingLogins = DefaultPendingLogins
	}
	if o.TrustedProxies == nil {
		o.TrustedProxies = DefaultTrustedProxies
	}
	if o.LoginRateLimit > 0 && o.LoginRateBurst == 0 {
		o.LoginRateBurst = max(1, o.LoginRateLimit/3)
	}
	if o.Seal == nil {
		k, _, err := seal.Generate()
		if err != nil {
			return o, fmt.Errorf("oidcflow: generate a sealing key: %w", err)
		}
		o.Seal = k
		o.Logger.Info("no Options.Seal: sign-out forms, login-loop cookies and (without Options.StateSeal) pending logins are sealed with a key only this process knows; other replicas cannot open them")
	}
	if o.StateSeal == nil {
		o.StateSeal = o.Seal
	}
	return o, nil
}

// claimPaths are the groups and user claim paths Options asks for, with
// the older single-claim fields and the defaults applied.
func (o Options) claimPaths() (groups, user []string) {
	groups = o.GroupsClaims
	if len(groups) == 0 {
		groups = []string{cmp.Or(o.GroupsClaim, DefaultGroupsClaim)}
	}
	user = o.UserClaims
	if len(user) == 0 {
		user = DefaultUserClaims
		if o.UsernameClaim != "" {
			user = []string{o.UsernameClaim}
			for _, c := range DefaultUserClaims[1:] {
				if !slices.Contains(user, c) {
					user = append(user, c)
				}
			}
		}
	}
	return slices.Clone(groups), slices.Clone(user)
}

type noMetrics struct{}

func (noMetrics) LoginSucceeded()     {}
func (noMetrics) LoginFailed(string)  {}
func (noMetrics) Revoked(string)      {}
func (noMetrics) GroupsCapped(string) {}
