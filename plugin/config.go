package edgepass

import (
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/edgepass/edgepass/plugin/edgestate"
	"github.com/edgepass/edgepass/plugin/natsedge"
	"github.com/edgepass/edgepass/plugin/policy"
	"github.com/edgepass/edgepass/plugin/token"
)

// Config is the middleware configuration. Traefik decodes it from the dynamic
// configuration with mapstructure (field names case-insensitive, weakly typed,
// comma-separated strings accepted for slices); defaults live in CreateConfig.
type Config struct {
	// LoginURL is the daemon's login start URL; browsers go to LoginURL?rd=<original URL>.
	LoginURL string
	// Issuer is the expected iss claim (the daemon's publicURL).
	Issuer string
	// Audience is the expected aud claim.
	Audience string
	// JWKS is an inline JWKS used until keys arrive over NATS; required without NATS.
	JWKS string
	// TrustAnchors are the daemon's trust-anchor public keys (`edgepass keys
	// anchor`): keys and group facts from NATS are accepted only when signed
	// by one, so NATS write access alone cannot introduce a key. Required
	// with nats.urls.
	TrustAnchors []string
	// CookieName is the session cookie the daemon sets.
	CookieName string
	// ClockSkew is the tolerance for exp, nbf and iat ("30s"; a bare number is seconds).
	ClockSkew string
	// AllowedGroups, AllowedUsers and AllowedEmailDomains admit a user on any
	// match; all empty admits every signed-in user. Users match
	// preferred_username, email or sub.
	AllowedGroups       []string
	AllowedUsers        []string
	AllowedEmailDomains []string
	// PublicPaths are served without a session: exact paths, or prefixes ending in "*".
	PublicPaths []string
	// UserHeader, EmailHeader, GroupsHeader, NameHeader and SubjectHeader name the
	// verified identity headers to set; empty = not set.
	UserHeader    string
	EmailHeader   string
	GroupsHeader  string
	NameHeader    string
	SubjectHeader string
	// GroupsSeparator joins groups in GroupsHeader.
	GroupsSeparator string
	// StripHeaders are extra client headers to delete (a trailing "*" is a prefix),
	// on top of the identity headers always deleted.
	StripHeaders []string
	// RemoveCookie hides the session cookie (and an Authorization header
	// carrying an edgepass token) from the backend, so a backend never holds
	// a credential that works on another route. Default true.
	RemoveCookie bool
	// RequireSync refuses requests (503, saying why) until the edge has
	// completed its first sync with NATS, so a replica that starts without
	// reaching NATS never decides without the revocations. Default true with
	// nats.urls.
	RequireSync bool
	// LogLevel "debug" logs each refusal's reason code (rate-limited);
	// "info" (default) logs only problems.
	LogLevel string
	// CacheSize bounds the verified-token cache of this middleware.
	CacheSize int
	// MaxStaleness is how old the NATS state may get before StaleAction applies ("" = never).
	MaxStaleness string
	// StaleAction is "serve" (keep serving on the last known state) or "refuse" (503).
	StaleAction string
	// NATS is the edge-sync connection; without URLs there is no edge sync.
	NATS NATSConfig
	// AssertionHeader, when set, sends the backend a signed identity
	// assertion in this header (package assertion: a short-lived JWT the
	// daemon signs, verifiable with its JWKS). Clients can never send it.
	// Needs nats.urls (the daemon mints assertions over NATS).
	AssertionHeader string
	// AssertionAudience is the assertion's aud: this backend's name (an
	// URL or any string it checks); required with AssertionHeader, never
	// the session audience.
	AssertionAudience string
	// ServiceTokens accepts the daemon's service tokens (machine
	// credentials, `edgepass tokens create`) as Authorization: Bearer; off
	// by default.
	ServiceTokens ServiceTokensConfig
	// Bearer accepts the identity provider's JWT access tokens as
	// Authorization: Bearer (scripts and services with client credentials);
	// off by default. Needs nats.urls (the daemon publishes the IdP's keys).
	Bearer BearerConfig
	// UnknownSettings collects the settings this version does not know:
	// Traefik's decoder drops them silently, so New refuses them instead (a
	// misspelled allowedGroups would otherwise admit everyone).
	UnknownSettings map[string]interface{} `mapstructure:",remain"`
}

// ServiceTokensConfig is the middleware's serviceTokens block.
type ServiceTokensConfig struct {
	// Enabled accepts service tokens here (as a bearer token only).
	Enabled bool
	// Audiences are this route's names: a service token is accepted when
	// its scope (the audiences it was created for) names one of them.
	Audiences []string
	// UnknownSettings collects misspelled serviceTokens.* settings.
	UnknownSettings map[string]interface{} `mapstructure:",remain"`
}

// BearerConfig is the middleware's bearer block (IdP access tokens).
type BearerConfig struct {
	// Enabled accepts IdP access tokens here.
	Enabled bool
	// Issuer is the IdP's issuer ("" = the one the daemon signs in with,
	// whose keys it publishes; another one cannot be verified).
	Issuer string
	// Audiences: a token's aud must name one of them (the API's identifier
	// at the IdP); required.
	Audiences []string
	// GroupsClaim replaces the daemon's oidc.groupsClaim for these tokens:
	// a claim name or names separated by dots ("" = the daemon's).
	GroupsClaim string
	// UnknownSettings collects misspelled bearer.* settings.
	UnknownSettings map[string]interface{} `mapstructure:",remain"`
}

// NATSConfig says how to reach the edge KV bucket; one connection per distinct
// setting is shared by every middleware in the process.
type NATSConfig struct {
	// URLs are NATS servers (nats://, tls://); empty = no edge sync.
	URLs []string
	// Bucket is the edge KV bucket.
	Bucket string
	// User with PasswordFile (or Password), TokenFile (or Token),
	// NKeySeedFile (or NKeySeed), CredsFile (user JWT + NKey seed) or
	// CertFile/KeyFile (TLS client certificate) authenticate to NATS. The
	// inline forms are visible to whoever reads Traefik's API: prefer files.
	Token        string
	TokenFile    string
	User         string
	Password     string
	PasswordFile string
	NKeySeed     string
	NKeySeedFile string
	CredsFile    string
	CertFile     string
	KeyFile      string
	// EdgeName names this edge's inbox, consumers and heartbeat subject; it
	// must match the edge's NATS permissions (default: User, else "edge").
	EdgeName string
	// CAFile, TLSServerName and InsecureSkipVerify configure TLS.
	CAFile             string
	TLSServerName      string
	InsecureSkipVerify bool
	// ReplicaID names this Traefik replica in heartbeats (default: hostname).
	ReplicaID string
	// UnknownSettings collects misspelled nats.* settings (see Config).
	UnknownSettings map[string]interface{} `mapstructure:",remain"`
}

// Defaults, in one place (the ones /verify shares live in package policy).
const (
	defaultAudience    = policy.DefaultAudience
	defaultCookieName  = policy.DefaultCookieName
	defaultClockSkew   = "30s"
	defaultSeparator   = policy.DefaultSeparator
	defaultCacheSize   = 10000
	maxCacheSize       = 1000000
	defaultStaleAction = "serve"
	defaultBucket      = natsedge.DefaultBucket
	// minMaxStaleness keeps a healthy, idle edge (heard from every idle
	// heartbeat, 1s) far from the bound: GC pauses and a busy server must
	// not make it flap.
	minMaxStaleness = 10 * time.Second
)

// CreateConfig returns the default configuration Traefik decodes the user's onto.
func CreateConfig() *Config {
	return &Config{
		Audience:        defaultAudience,
		CookieName:      defaultCookieName,
		ClockSkew:       defaultClockSkew,
		GroupsSeparator: defaultSeparator,
		CacheSize:       defaultCacheSize,
		StaleAction:     defaultStaleAction,
		RemoveCookie:    true,
		RequireSync:     true,
		LogLevel:        "info",
		NATS:            NATSConfig{Bucket: defaultBucket},
	}
}

// settings is a validated Config with everything the request path needs precomputed.
type settings struct {
	loginURL    string // as configured
	loginPrefix string // loginURL + "?rd=" or "&rd="
	verifier    token.Verifier
	skewSec     int64
	inlineKeys  *token.KeySet
	anchors     []string // trust anchors (validated), for the NATS edge state
	cookieName  string
	// hostCookie is "__Host-" + cookieName: the daemon sets the session
	// cookie under that name when it is host-only and Secure.
	hostCookie string

	// pol is the route's access decision, shared with /verify.
	pol          *policy.Policy
	publicExact  map[string]bool
	publicPrefix []string

	removeCookie bool
	requireSync  bool
	logRefusals  bool
	cacheSize    int
	maxStaleSec  int64 // 0 = off
	refuseStale  bool
	// lineIndexOff: public paths or stale refusal configured, so every
	// request takes serveSlow (the line index stays empty).
	lineIndexOff bool
	nats         NATSConfig // URLs trimmed and split
	// assertHeader (canonical) and assertAudience: identity assertions
	// (assert.go); "" = off.
	assertHeader   string
	assertAudience string
	// serviceAuds are the audiences service tokens must name (nil: service
	// tokens refused); anyAudience is verifier without the audience check,
	// used when they are on (verify checks which audience a token has).
	serviceAuds map[string]bool
	anyAudience token.Verifier
	// idp: IdP access tokens accepted (bearer.go); nil = off.
	idp *idpSettings
}

func fieldErr(field, format string, args ...any) error {
	return fmt.Errorf("edgepass: "+field+": "+format, args...)
}

// problems collects what compile finds wrong, so New reports every problem
// at once instead of one per configuration reload.
type problems struct {
	errs []error
}

// add records err; nil is no problem.
func (p *problems) add(err error) {
	if err != nil {
		p.errs = append(p.errs, err)
	}
}

// err is every problem recorded, one per line, each naming its field; nil
// without any.
func (p *problems) err() error {
	if len(p.errs) == 0 {
		return nil
	}
	if len(p.errs) == 1 {
		return p.errs[0]
	}
	return errors.Join(p.errs...)
}

// compile validates cfg and precomputes settings. Every section is checked
// and every problem reported at once, each naming its field.
func compile(cfg *Config) (*settings, error) {
	if cfg == nil {
		return nil, fmt.Errorf("edgepass: no configuration")
	}
	if err := unknownSettings(cfg); err != nil {
		return nil, err
	}
	s := &settings{}
	var p problems
	// In this order: later sections read the verifier's audience and the
	// NATS URLs, which earlier ones set even when they report a problem.
	compileLogin(cfg, s, &p)
	compileVerifier(cfg, s, &p)
	compileCookie(cfg, s, &p)
	compileKeys(cfg, s, &p)
	compilePublicPaths(cfg, s, &p)
	p.add(compileAssertion(cfg, s))
	p.add(compileServiceTokens(cfg, s))
	p.add(compileBearer(cfg, s))
	compilePolicy(cfg, s, &p)
	compileLimits(cfg, s, &p)
	compileStaleness(cfg, s, &p)
	if err := p.err(); err != nil {
		return nil, err
	}
	s.lineIndexOff = len(s.publicExact) > 0 || len(s.publicPrefix) > 0 || s.refuseStale
	return s, nil
}

// compileLogin checks loginURL and precomputes the redirect's prefix.
func compileLogin(cfg *Config, s *settings, p *problems) {
	login := strings.TrimSpace(cfg.LoginURL)
	if login == "" {
		p.add(fieldErr("loginURL", "required: the daemon's login URL, e.g. https://auth.example.com/login"))
		return
	}
	u, err := url.Parse(login)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || u.Fragment != "" {
		p.add(fieldErr("loginURL", "must be an absolute http(s) URL without user info or fragment, got %q", login))
		return
	}
	s.loginURL = login
	switch {
	case strings.HasSuffix(login, "?") || strings.HasSuffix(login, "&"):
		s.loginPrefix = login + "rd="
	case u.RawQuery != "" || u.ForceQuery:
		s.loginPrefix = login + "&rd="
	default:
		s.loginPrefix = login + "?rd="
	}
}

// compileVerifier checks what a session token is verified against: issuer,
// audience and clockSkew.
func compileVerifier(cfg *Config, s *settings, p *problems) {
	s.verifier.Issuer = strings.TrimSpace(cfg.Issuer)
	if s.verifier.Issuer == "" {
		p.add(fieldErr("issuer", "required: the daemon's publicURL (the iss of its tokens)"))
	}
	s.verifier.Audience = strings.TrimSpace(cfg.Audience)
	if s.verifier.Audience == "" {
		s.verifier.Audience = defaultAudience
	}
	skew, err := parseDuration(cfg.ClockSkew, defaultClockSkew)
	if err != nil {
		p.add(fieldErr("clockSkew", "%v", err))
		return
	}
	if skew > edgestate.PruneGrace {
		// Edges forget a revocation PruneGrace after its exp: a longer skew
		// would accept a revoked token again in between.
		p.add(fieldErr("clockSkew", "%s is more than %s (how long edges keep a revocation past its exp); use a few seconds", skew, edgestate.PruneGrace))
		return
	}
	s.verifier.Skew = skew
	s.skewSec = int64(skew / time.Second)
}

// compileCookie checks cookieName.
func compileCookie(cfg *Config, s *settings, p *problems) {
	s.cookieName = strings.TrimSpace(cfg.CookieName)
	if s.cookieName == "" {
		s.cookieName = defaultCookieName
	}
	if !policy.ValidToken(s.cookieName) {
		p.add(fieldErr("cookieName", "%q is not a valid cookie name", s.cookieName))
		return
	}
	s.hostCookie = policy.HostCookieName(s.cookieName)
}

// compileKeys checks where verification keys come from: the inline jwks,
// or NATS with the trust anchors that sign them.
func compileKeys(cfg *Config, s *settings, p *problems) {
	s.nats = cfg.NATS
	s.nats.URLs = policy.SplitList(cfg.NATS.URLs)
	jwks := strings.TrimSpace(cfg.JWKS)
	if jwks != "" {
		ks, err := token.ParseJWKS([]byte(jwks))
		if err != nil {
			p.add(fieldErr("jwks", "%v; paste the daemon's /.well-known/jwks.json", err))
		}
		s.inlineKeys = ks
	} else if len(s.nats.URLs) == 0 {
		p.add(fieldErr("jwks", "required when nats.urls is empty; paste the daemon's /.well-known/jwks.json"))
	}
	s.anchors = policy.SplitList(cfg.TrustAnchors)
	if len(s.anchors) > 0 {
		if _, err := token.ParseAnchors(s.anchors); err != nil {
			p.add(fieldErr("trustAnchors", "%v", err))
		}
	} else if len(s.nats.URLs) > 0 {
		// Without an anchor no keys fact could be trusted: whoever can write
		// the edge bucket could otherwise introduce a verification key.
		p.add(fieldErr("trustAnchors", "required with nats.urls: the daemon's trust anchor, printed by `edgepass keys anchor` and in the daemon's log at start"))
	}
}

// compilePublicPaths checks publicPaths: exact paths, or prefixes ending in "*".
func compilePublicPaths(cfg *Config, s *settings, p *problems) {
	s.publicExact = map[string]bool{}
	for _, path := range policy.SplitList(cfg.PublicPaths) {
		if !strings.HasPrefix(path, "/") {
			p.add(fieldErr("publicPaths", "%q must start with /", path))
			continue
		}
		if strings.HasSuffix(path, "*") {
			s.publicPrefix = append(s.publicPrefix, strings.TrimSuffix(path, "*"))
		} else {
			s.publicExact[path] = true
		}
	}
}

// compilePolicy compiles the route's access rules and identity headers
// (policy.Compile, shared with /verify); the assertion header, already
// compiled, is stripped from clients and cannot be an identity header.
func compilePolicy(cfg *Config, s *settings, p *problems) {
	strip := cfg.StripHeaders
	if s.assertHeader != "" {
		// A client's own copy of the assertion header never reaches the backend.
		strip = append(append([]string(nil), cfg.StripHeaders...), s.assertHeader)
	}
	pol, err := policy.Compile(policy.Rules{
		AllowedGroups: cfg.AllowedGroups, AllowedUsers: cfg.AllowedUsers, AllowedEmailDomains: cfg.AllowedEmailDomains,
		UserHeader: cfg.UserHeader, EmailHeader: cfg.EmailHeader, GroupsHeader: cfg.GroupsHeader,
		NameHeader: cfg.NameHeader, SubjectHeader: cfg.SubjectHeader,
		GroupsSeparator: cfg.GroupsSeparator, StripHeaders: strip,
	})
	if err != nil {
		p.add(fmt.Errorf("edgepass: %w", err))
		return
	}
	s.pol = pol
	for _, n := range pol.IdentityNames {
		if n != "" && s.assertHeader != "" && policy.NormalizeHeader(n) == policy.NormalizeHeader(s.assertHeader) {
			p.add(fieldErr("assertionHeader", "%q is already an identity header", cfg.AssertionHeader))
		}
	}
}

// compileLimits checks removeCookie, requireSync, logLevel and cacheSize.
func compileLimits(cfg *Config, s *settings, p *problems) {
	s.removeCookie = cfg.RemoveCookie
	s.requireSync = cfg.RequireSync && len(s.nats.URLs) > 0
	s.logRefusals = oneOfTwo("logLevel", cfg.LogLevel, "info", "debug", p)
	s.cacheSize = cfg.CacheSize
	if s.cacheSize == 0 {
		s.cacheSize = defaultCacheSize
	}
	if s.cacheSize < 1 || s.cacheSize > maxCacheSize {
		p.add(fieldErr("cacheSize", "%d is out of range 1..%d", cfg.CacheSize, maxCacheSize))
	}
}

// compileStaleness checks maxStaleness and staleAction.
func compileStaleness(cfg *Config, s *settings, p *problems) {
	stale, err := parseDuration(cfg.MaxStaleness, "")
	switch {
	case err != nil:
		p.add(fieldErr("maxStaleness", "%v", err))
	case stale > 0 && stale < minMaxStaleness:
		p.add(fieldErr("maxStaleness", "%s is below %s: an idle NATS is heard from every %s, so a shorter bound would flag a healthy edge as stale", stale, minMaxStaleness, natsedge.DefaultIdleHeartbeat))
	case stale > 0 && len(s.nats.URLs) == 0:
		p.add(fieldErr("maxStaleness", "needs nats.urls (staleness is about the NATS edge state)"))
	default:
		s.maxStaleSec = int64(stale / time.Second)
	}
	s.refuseStale = oneOfTwo("staleAction", cfg.StaleAction, "serve", "refuse", p)
	if s.refuseStale && stale == 0 && err == nil {
		// Without a bound every request would count as stale and get a 503.
		p.add(fieldErr("staleAction", "refuse needs maxStaleness (e.g. 2m): how old the NATS state may get before requests are refused"))
	}
}

// oneOfTwo reads a setting that is one of two words, in any case, the first
// the default (also when empty): whether it is the second. Any other value
// is a problem.
func oneOfTwo(field, value, first, second string, p *problems) bool {
	v := strings.ToLower(strings.TrimSpace(value))
	if v == second {
		return true
	}
	if v != "" && v != first {
		p.add(fieldErr(field, "%q must be %s or %s", value, first, second))
	}
	return false
}

// parseDuration reads "30s"-style durations; a bare number means seconds because
// weakly typed decoding turns `clockSkew: 30` into "30".
func parseDuration(v, def string) (time.Duration, error) {
	v = strings.TrimSpace(v)
	if v == "" {
		v = def
	}
	if v == "" {
		return 0, nil
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n < 0 || n > 1<<31 {
			return 0, fmt.Errorf("%q is out of range", v)
		}
		return time.Duration(n) * time.Second, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration like 30s or 5m", v)
	}
	if d < 0 {
		return 0, fmt.Errorf("%q is negative", v)
	}
	return d, nil
}
