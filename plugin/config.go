package edgepass

import (
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/edgepass/edgepass/plugin/edgestate"
	"github.com/edgepass/edgepass/plugin/natsedge"
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
	// RemoveCookie hides the session cookie from the backend.
	RemoveCookie bool
	// CacheSize bounds the verified-token cache of this middleware.
	CacheSize int
	// MaxStaleness is how old the NATS state may get before StaleAction applies ("" = never).
	MaxStaleness string
	// StaleAction is "serve" (keep serving on the last known state) or "refuse" (503).
	StaleAction string
	// NATS is the edge-sync connection; without URLs there is no edge sync.
	NATS NATSConfig
}

// NATSConfig says how to reach the edge KV bucket; one connection per distinct
// setting is shared by every middleware in the process.
type NATSConfig struct {
	// URLs are NATS servers (nats://, tls://); empty = no edge sync.
	URLs []string
	// Bucket is the edge KV bucket.
	Bucket string
	// Token, User/Password and NKeySeed authenticate to NATS.
	Token    string
	User     string
	Password string
	NKeySeed string
	// CAFile, TLSServerName and InsecureSkipVerify configure TLS.
	CAFile             string
	TLSServerName      string
	InsecureSkipVerify bool
	// ReplicaID names this Traefik replica in heartbeats (default: hostname).
	ReplicaID string
}

// Defaults, in one place.
const (
	defaultAudience    = "edgepass"
	defaultCookieName  = "edgepass_session"
	defaultClockSkew   = "30s"
	defaultSeparator   = ","
	defaultCacheSize   = 10000
	maxCacheSize       = 1000000
	defaultStaleAction = "serve"
	defaultBucket      = natsedge.DefaultBucket
	// minMaxStaleness is twice the idle heartbeat: the longest a healthy, idle
	// edge goes without hearing from NATS, with room for one late heartbeat.
	minMaxStaleness = 2 * natsedge.DefaultIdleHeartbeat
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
		NATS:            NATSConfig{Bucket: defaultBucket},
	}
}

// alwaysStripped are identity headers used by common forward-auth setups; a client
// must never be able to send them to a backend.
var alwaysStripped = []string{
	"X-Forwarded-User", "X-Forwarded-Email", "X-Forwarded-Groups", "X-Forwarded-Preferred-Username",
	"Remote-User", "Remote-Groups", "Remote-Email", "Remote-Name", "X-Remote-User",
	"X-Auth-Request-*", "X-Authentik-*", "X-Edgepass-*",
}

// reservedHeaders cannot be identity headers: stripping them would break the request.
var reservedHeaders = map[string]bool{
	"authorization": true, "cookie": true, "host": true, "content-length": true, "content-type": true,
	"transfer-encoding": true, "connection": true, "upgrade": true, "te": true, "trailer": true,
	"x-forwarded-for": true, "x-forwarded-host": true, "x-forwarded-proto": true, "x-real-ip": true,
}

// settings is a validated Config with everything the request path needs precomputed.
type settings struct {
	loginURL    string // as configured
	loginPrefix string // loginURL + "?rd=" or "&rd="
	verifier    token.Verifier
	skewSec     int64
	inlineKeys  *token.KeySet
	cookieName  string

	allowAll      bool
	allowGroups   map[string]bool
	allowUsers    map[string]bool
	allowEmails   map[string]bool // lower-cased entries, for email matches
	allowDomains  map[string]bool // lower-cased
	publicExact   map[string]bool
	publicPrefix  []string
	identityNames []string // canonical header names, in field order user, email, groups, name, subject
	separator     string

	stripExact  map[string]bool // normalized names
	stripPrefix []string        // normalized prefixes

	removeCookie bool
	cacheSize    int
	maxStaleSec  int64 // 0 = off
	refuseStale  bool
	// special: public paths or stale refusal configured, so every request
	// takes serveSlow (the line index stays empty).
	special bool
	nats    NATSConfig // URLs trimmed and split
}

func fieldErr(field, format string, args ...any) error {
	return fmt.Errorf("edgepass: "+field+": "+format, args...)
}

// compile validates cfg and precomputes settings; errors name the offending field.
func compile(cfg *Config) (*settings, error) {
	if cfg == nil {
		return nil, fmt.Errorf("edgepass: no configuration")
	}
	s := &settings{}

	login := strings.TrimSpace(cfg.LoginURL)
	if login == "" {
		return nil, fieldErr("loginURL", "required: the daemon's login URL, e.g. https://auth.example.com/login")
	}
	u, err := url.Parse(login)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || u.Fragment != "" {
		return nil, fieldErr("loginURL", "must be an absolute http(s) URL without user info or fragment, got %q", login)
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

	s.verifier.Issuer = strings.TrimSpace(cfg.Issuer)
	if s.verifier.Issuer == "" {
		return nil, fieldErr("issuer", "required: the daemon's publicURL (the iss of its tokens)")
	}
	s.verifier.Audience = strings.TrimSpace(cfg.Audience)
	if s.verifier.Audience == "" {
		s.verifier.Audience = defaultAudience
	}

	skew, err := parseDuration(cfg.ClockSkew, defaultClockSkew)
	if err != nil {
		return nil, fieldErr("clockSkew", "%v", err)
	}
	if skew > edgestate.PruneGrace {
		// Edges forget a revocation PruneGrace after its exp: a longer skew
		// would accept a revoked token again in between.
		return nil, fieldErr("clockSkew", "%s is more than %s (how long edges keep a revocation past its exp); use a few seconds", skew, edgestate.PruneGrace)
	}
	s.verifier.Skew = skew
	s.skewSec = int64(skew / time.Second)

	s.cookieName = strings.TrimSpace(cfg.CookieName)
	if s.cookieName == "" {
		s.cookieName = defaultCookieName
	}
	if !validToken(s.cookieName) {
		return nil, fieldErr("cookieName", "%q is not a valid cookie name", s.cookieName)
	}

	s.nats = cfg.NATS
	s.nats.URLs = splitList(cfg.NATS.URLs)
	jwks := strings.TrimSpace(cfg.JWKS)
	if jwks != "" {
		ks, err := token.ParseJWKS([]byte(jwks))
		if err != nil {
			return nil, fieldErr("jwks", "%v; paste the daemon's /.well-known/jwks.json", err)
		}
		s.inlineKeys = ks
	} else if len(s.nats.URLs) == 0 {
		return nil, fieldErr("jwks", "required when nats.urls is empty; paste the daemon's /.well-known/jwks.json")
	}

	s.allowGroups = toSet(splitList(cfg.AllowedGroups), false)
	users := splitList(cfg.AllowedUsers)
	s.allowUsers = toSet(users, false)
	s.allowEmails = toSet(users, true)
	domains := splitList(cfg.AllowedEmailDomains)
	for i, d := range domains {
		domains[i] = strings.TrimPrefix(d, "@")
		if domains[i] == "" || strings.ContainsAny(domains[i], "@/ ") {
			return nil, fieldErr("allowedEmailDomains", "%q is not a domain", d)
		}
	}
	s.allowDomains = toSet(domains, true)
	s.allowAll = len(s.allowGroups) == 0 && len(s.allowUsers) == 0 && len(s.allowDomains) == 0

	s.publicExact = map[string]bool{}
	for _, p := range splitList(cfg.PublicPaths) {
		if !strings.HasPrefix(p, "/") {
			return nil, fieldErr("publicPaths", "%q must start with /", p)
		}
		if strings.HasSuffix(p, "*") {
			s.publicPrefix = append(s.publicPrefix, strings.TrimSuffix(p, "*"))
		} else {
			s.publicExact[p] = true
		}
	}

	s.stripExact = map[string]bool{}
	seen := map[string]string{}
	fields := []struct{ name, value string }{
		{"userHeader", cfg.UserHeader}, {"emailHeader", cfg.EmailHeader}, {"groupsHeader", cfg.GroupsHeader},
		{"nameHeader", cfg.NameHeader}, {"subjectHeader", cfg.SubjectHeader},
	}
	for _, f := range fields {
		v := strings.TrimSpace(f.value)
		if v == "" {
			s.identityNames = append(s.identityNames, "")
			continue
		}
		if !validToken(v) {
			return nil, fieldErr(f.name, "%q is not a valid header name", v)
		}
		n := normalizeHeader(v)
		if reservedHeaders[n] {
			return nil, fieldErr(f.name, "%q cannot carry identity (it would be stripped from every request)", v)
		}
		if other, dup := seen[n]; dup {
			return nil, fieldErr(f.name, "%q is already used by %s", v, other)
		}
		seen[n] = f.name
		s.identityNames = append(s.identityNames, http.CanonicalHeaderKey(v))
		s.stripExact[n] = true
	}
	s.separator = cfg.GroupsSeparator
	if s.separator == "" {
		s.separator = defaultSeparator
	}
	for _, h := range alwaysStripped {
		s.addStrip(h)
	}
	for _, h := range splitList(cfg.StripHeaders) {
		if !validToken(strings.TrimSuffix(h, "*")) {
			return nil, fieldErr("stripHeaders", "%q is not a header name (a trailing * makes it a prefix)", h)
		}
		if reservedHeaders[normalizeHeader(strings.TrimSuffix(h, "*"))] && !strings.HasSuffix(h, "*") {
			return nil, fieldErr("stripHeaders", "%q is needed to authenticate and route the request", h)
		}
		s.addStrip(h)
	}

	s.removeCookie = cfg.RemoveCookie
	s.cacheSize = cfg.CacheSize
	if s.cacheSize == 0 {
		s.cacheSize = defaultCacheSize
	}
	if s.cacheSize < 1 || s.cacheSize > maxCacheSize {
		return nil, fieldErr("cacheSize", "%d is out of range 1..%d", cfg.CacheSize, maxCacheSize)
	}

	stale, err := parseDuration(cfg.MaxStaleness, "")
	if err != nil {
		return nil, fieldErr("maxStaleness", "%v", err)
	}
	if stale > 0 && stale < minMaxStaleness {
		return nil, fieldErr("maxStaleness", "%s is below %s: an idle NATS is heard from every %s, so a shorter bound would flag a healthy edge as stale", stale, minMaxStaleness, natsedge.DefaultIdleHeartbeat)
	}
	s.maxStaleSec = int64(stale / time.Second)
	switch strings.ToLower(strings.TrimSpace(cfg.StaleAction)) {
	case "", "serve":
	case "refuse":
		s.refuseStale = true
	default:
		return nil, fieldErr("staleAction", "%q must be serve or refuse", cfg.StaleAction)
	}
	if s.refuseStale && s.maxStaleSec == 0 {
		// Without a bound every request would count as stale and get a 503.
		return nil, fieldErr("staleAction", "refuse needs maxStaleness (e.g. 2m): how old the NATS state may get before requests are refused")
	}
	if s.maxStaleSec > 0 && len(s.nats.URLs) == 0 {
		return nil, fieldErr("maxStaleness", "needs nats.urls (staleness is about the NATS edge state)")
	}
	s.special = len(s.publicExact) > 0 || len(s.publicPrefix) > 0 || s.refuseStale
	return s, nil
}

func (s *settings) addStrip(h string) {
	if strings.HasSuffix(h, "*") {
		s.stripPrefix = append(s.stripPrefix, normalizeHeader(strings.TrimSuffix(h, "*")))
		return
	}
	s.stripExact[normalizeHeader(h)] = true
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

// splitList trims entries, splits any that still hold commas and drops empties.
func splitList(in []string) []string {
	var out []string
	for _, e := range in {
		for _, p := range strings.Split(e, ",") {
			p = strings.TrimSpace(p)
			if p != "" {
				out = append(out, p)
			}
		}
	}
	return out
}

func toSet(in []string, lower bool) map[string]bool {
	m := make(map[string]bool, len(in))
	for _, v := range in {
		if lower {
			v = strings.ToLower(v)
		}
		m[v] = true
	}
	return m
}

// normalizeHeader folds a header name the way CGI/PHP/WSGI backends do: case
// and "_" versus "-" do not matter.
func normalizeHeader(h string) string {
	return strings.ToLower(strings.ReplaceAll(h, "_", "-"))
}

// tokenChars are the RFC 7230 tchar characters (header and cookie names).
const tokenChars = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"

func validToken(s string) bool {
	return s != "" && strings.Trim(s, tokenChars) == ""
}
