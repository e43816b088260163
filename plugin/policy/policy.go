// Package policy is edgepass's one access decision, shared by its two
// enforcement points — the Traefik plugin and the daemon's ForwardAuth
// /verify — so they can never disagree: who a route admits (groups, users,
// email domains), which identity headers the backend gets and how their values
// are written (joined, sanitized), which client headers are stripped, whether
// a refused request is a browser navigation (login redirect) or an API call
// (401), why a request is refused, and the defaults both use.
//
// It runs inside Traefik: Go that Yaegi v0.16.1 runs (docs/architecture.md, I1).
package policy

import (
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/edgepass/edgepass/plugin/token"
)

// Defaults both enforcement points (and the daemon that issues the tokens)
// use; one place, so a change cannot reach one and miss the other.
const (
	DefaultCookieName = "edgepass_session"
	DefaultAudience   = token.SessionAudience
	DefaultSeparator  = ","
)

// HostCookieName is the session cookie's name when the daemon sets it
// host-only and Secure: the "__Host-" prefix makes browsers refuse a cookie
// of that name set by another host or over http (no subdomain can plant or
// overwrite it). Edges accept both names.
func HostCookieName(name string) string {
	if strings.HasPrefix(name, "__Host-") || strings.HasPrefix(name, "__Secure-") {
		return name
	}
	return "__Host-" + name
}

// Reason codes: why a request was refused (logs, metrics, WWW-Authenticate).
// "" means admitted.
const (
	NoToken        = "no_token"
	BadToken       = "bad_token"
	Expired        = "expired"
	SessionRevoked = "session_revoked"
	UserRevoked    = "user_revoked"
	TooLong        = "too_long"
	NotAllowed     = "not_allowed"
	Stale          = "stale"
	NotSynced      = "not_synced"
	NoKeys         = "no_keys"
	// WrongAudience and WrongIssuer: a validly signed token meant for
	// something else (a service token outside its scope, an IdP access
	// token for another API, a token of another daemon or IdP).
	WrongAudience = "wrong_audience"
	WrongIssuer   = "wrong_issuer"
	// AssertionUnavailable: the route sends an identity assertion
	// (assertionHeader) and none could be had from the daemon (503).
	AssertionUnavailable = "assertion_unavailable"
)

// Reasons lists every reason code, for metrics whose series start at zero.
var Reasons = []string{NoToken, BadToken, Expired, SessionRevoked, UserRevoked, TooLong, NotAllowed, Stale, NotSynced, NoKeys,
	WrongAudience, WrongIssuer, AssertionUnavailable}

// AlwaysStripped are identity headers of common forward-auth setups: a
// client must never be able to send them to a backend, whatever the route
// configures. A trailing "*" is a prefix.
var AlwaysStripped = []string{
	"X-Forwarded-User", "X-Forwarded-Email", "X-Forwarded-Groups", "X-Forwarded-Preferred-Username",
	"Remote-User", "Remote-Groups", "Remote-Email", "Remote-Name", "X-Remote-User",
	"X-Auth-Request-*", "X-Authentik-*", "X-Edgepass-*",
}

// reserved cannot be identity headers: stripping them would break the request.
var reserved = map[string]bool{
	"authorization": true, "cookie": true, "host": true, "content-length": true, "content-type": true,
	"transfer-encoding": true, "connection": true, "upgrade": true, "te": true, "trailer": true,
	"x-forwarded-for": true, "x-forwarded-host": true, "x-forwarded-proto": true, "x-real-ip": true,
}

// Rules are a route's settings, as the plugin's middleware configuration and
// /verify's query parameters name them.
type Rules struct {
	AllowedGroups       []string
	AllowedUsers        []string
	AllowedEmailDomains []string
	UserHeader          string
	EmailHeader         string
	GroupsHeader        string
	NameHeader          string
	SubjectHeader       string
	GroupsSeparator     string
	StripHeaders        []string
}

// Policy is compiled Rules: everything a decision needs, precomputed.
type Policy struct {
	allowAll     bool
	allowGroups  map[string]bool
	allowUsers   map[string]bool
	allowEmails  map[string]bool // lower-cased, for email matches
	allowDomains map[string]bool // lower-cased
	// IdentityNames are the canonical names of the identity headers in the
	// order user, email, groups, name, subject ("" = not sent).
	IdentityNames []string
	separator     string
	stripExact    map[string]bool // normalized names
	stripPrefix   []string        // normalized prefixes
}

// FieldError names the setting a compile error is about.
type FieldError struct {
	Field string
	Msg   string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Msg }

func fieldErr(field, format string, args ...any) error {
	return &FieldError{Field: field, Msg: fmt.Sprintf(format, args...)}
}

// Compile validates r; errors are *FieldError naming the setting.
func Compile(r Rules) (*Policy, error) {
	p := &Policy{}
	p.allowGroups = toSet(SplitList(r.AllowedGroups), false)
	users := SplitList(r.AllowedUsers)
	p.allowUsers = toSet(users, false)
	p.allowEmails = toSet(users, true)
	domains := SplitList(r.AllowedEmailDomains)
	for i, d := range domains {
		domains[i] = strings.TrimPrefix(d, "@")
		if domains[i] == "" || strings.ContainsAny(domains[i], "@/ ") {
			return nil, fieldErr("allowedEmailDomains", "%q is not a domain", d)
		}
	}
	p.allowDomains = toSet(domains, true)
	p.allowAll = len(p.allowGroups) == 0 && len(p.allowUsers) == 0 && len(p.allowDomains) == 0

	p.stripExact = map[string]bool{}
	seen := map[string]string{}
	fields := []struct{ name, value string }{
		{"userHeader", r.UserHeader}, {"emailHeader", r.EmailHeader}, {"groupsHeader", r.GroupsHeader},
		{"nameHeader", r.NameHeader}, {"subjectHeader", r.SubjectHeader},
	}
	for _, f := range fields {
		v := strings.TrimSpace(f.value)
		if v == "" {
			p.IdentityNames = append(p.IdentityNames, "")
			continue
		}
		if !ValidToken(v) {
			return nil, fieldErr(f.name, "%q is not a valid header name", v)
		}
		n := NormalizeHeader(v)
		if reserved[n] {
			return nil, fieldErr(f.name, "%q cannot carry identity (it would be stripped from every request)", v)
		}
		if other, dup := seen[n]; dup {
			return nil, fieldErr(f.name, "%q is already used by %s", v, other)
		}
		seen[n] = f.name
		p.IdentityNames = append(p.IdentityNames, http.CanonicalHeaderKey(v))
		p.stripExact[n] = true
	}
	p.separator = r.GroupsSeparator
	if p.separator == "" {
		p.separator = DefaultSeparator
	}
	if !validSeparator(p.separator) {
		return nil, fieldErr("groupsSeparator", "%q is not one printable punctuation or space character; use one such as \",\", \";\" or \"|\" (a longer one could overlap a group name and split it wrongly)", p.separator)
	}
	for _, h := range AlwaysStripped {
		p.addStrip(h)
	}
	for _, h := range SplitList(r.StripHeaders) {
		if !ValidToken(strings.TrimSuffix(h, "*")) {
			return nil, fieldErr("stripHeaders", "%q is not a header name (a trailing * makes it a prefix)", h)
		}
		if reserved[NormalizeHeader(strings.TrimSuffix(h, "*"))] && !strings.HasSuffix(h, "*") {
			return nil, fieldErr("stripHeaders", "%q is needed to authenticate and route the request", h)
		}
		p.addStrip(h)
	}
	return p, nil
}

// Reserved reports a header (normalized by NormalizeHeader) the request
// needs to authenticate and route: no setting may strip or overwrite it.
func Reserved(normalized string) bool { return reserved[normalized] }

func (p *Policy) addStrip(h string) {
	if strings.HasSuffix(h, "*") {
		p.stripPrefix = append(p.stripPrefix, NormalizeHeader(strings.TrimSuffix(h, "*")))
		return
	}
	p.stripExact[NormalizeHeader(h)] = true
}

// Strips reports whether a client header named name must be deleted before
// the backend sees it: compared case-insensitively and with "_" equal to "-",
// the way CGI, PHP and WSGI backends fold names.
func (p *Policy) Strips(name string) bool {
	n := NormalizeHeader(name)
	if p.stripExact[n] {
		return true
	}
	for _, pre := range p.stripPrefix {
		if strings.HasPrefix(n, pre) {
			return true
		}
	}
	return false
}

// ForwardAuthRegex is a Traefik ForwardAuth authResponseHeadersRegex for
// this policy: Traefik deletes every request header matching it before
// copying the auth response's matching headers, so it must match every name
// Strips strips — in any case, with "_" for "-" — and the identity headers
// /verify answers with.
func (p *Policy) ForwardAuthRegex() string {
	var exact []string
	for n := range p.stripExact {
		exact = append(exact, n)
	}
	prefixes := append([]string(nil), p.stripPrefix...)
	sort.Strings(exact)
	sort.Strings(prefixes)
	var alts []string
	for _, n := range exact {
		alts = append(alts, dashClass(n))
	}
	for _, n := range prefixes {
		alts = append(alts, dashClass(n)+".*")
	}
	return "(?i)^(" + strings.Join(alts, "|") + ")$"
}

// dashClass writes a normalized header name as a regular expression in which
// "-" also matches "_"; every other character is a letter, digit or tchar,
// quoted where the regexp syntax needs it.
func dashClass(n string) string {
	var b strings.Builder
	for i := 0; i < len(n); i++ {
		c := n[i]
		switch {
		case c == '-':
			b.WriteString("[-_]")
		case c >= 'a' && c <= 'z' || c >= '0' && c <= '9': // one condition: docs/architecture.md, I1
			b.WriteByte(c)
		default:
			b.WriteByte('\\')
			b.WriteByte(c)
		}
	}
	return b.String()
}

// Admits reports whether the route admits a user with claims c and
// effective groups: any match of groups, users (preferred_username, email or
// sub) or email domains; with no rules, every signed-in user.
func (p *Policy) Admits(c *token.Claims, groups []string) bool {
	if p.allowAll {
		return true
	}
	for _, g := range groups {
		if p.allowGroups[g] {
			return true
		}
	}
	if (c.PreferredUsername != "" && p.allowUsers[c.PreferredUsername]) || p.allowUsers[c.Subject] {
		return true
	}
	if c.Email != "" {
		email := strings.ToLower(c.Email)
		if p.allowEmails[email] {
			return true
		}
		if at := strings.LastIndexByte(email, '@'); at >= 0 && p.allowDomains[email[at+1:]] {
			return true
		}
	}
	return false
}

// Identity is the identity headers for a user: the configured names and
// their sanitized values (empty values are left out).
func (p *Policy) Identity(c *token.Claims, groups []string) (names []string, values []string) {
	all := []string{c.User(), c.Email, JoinGroups(groups, p.separator), c.Name, c.Subject}
	for i, name := range p.IdentityNames {
		if name == "" || all[i] == "" {
			continue
		}
		v := Sanitize(all[i])
		if v == "" {
			continue
		}
		names = append(names, name)
		values = append(values, v)
	}
	return names, values
}

// State is what a decision needs of the edge state (edgestate.State).
type State interface {
	SessionRevoked(sid string, now time.Time) bool
	UserRevoked(subjectKey string, iat int64, now time.Time) bool
	TooLong(iat, exp int64) bool
	GroupsOverride(subjectKey string, iat int64) ([]string, bool)
}

// Decision is the outcome for verified claims.
type Decision struct {
	// Reason is "" when admitted, else a reason code (SessionRevoked,
	// UserRevoked, TooLong, NotAllowed).
	Reason string
	// Groups are the effective groups (an edge override replaces the token's).
	Groups []string
	// Names and Values are the identity headers to set when admitted.
	Names  []string
	Values []string
}

// Decide applies the edge state (nil: none) and the rules to verified claims.
func (p *Policy) Decide(c *token.Claims, subjectKey string, st State, now time.Time) Decision {
	d := Decision{Groups: c.Groups}
	if st != nil {
		switch {
		case st.SessionRevoked(c.SessionID, now):
			d.Reason = SessionRevoked
			return d
		case st.UserRevoked(subjectKey, c.IssuedAt, now):
			d.Reason = UserRevoked
			return d
		case st.TooLong(c.IssuedAt, c.Expiry):
			// A token living longer than the daemon ever issues was minted
			// with a leaked key.
			d.Reason = TooLong
			return d
		}
		if g, ok := st.GroupsOverride(subjectKey, c.IssuedAt); ok {
			d.Groups = g
		}
	}
	if !p.Admits(c, d.Groups) {
		d.Reason = NotAllowed
		return d
	}
	d.Names, d.Values = p.Identity(c, d.Groups)
	return d
}

// Challenge is the WWW-Authenticate value of a 401 for reason: RFC 6750's
// error="invalid_token" with the reason code when a token was presented.
func Challenge(reason string) string {
	if reason == "" || reason == NoToken {
		return `Bearer realm="edgepass"`
	}
	return `Bearer realm="edgepass", error="invalid_token", error_description="` + reason + `"`
}

// TokenReason maps a token.Verify error to a reason code.
func TokenReason(err error) string {
	switch {
	case errors.Is(err, token.ErrExpired):
		return Expired
	case errors.Is(err, token.ErrAudience):
		return WrongAudience
	case errors.Is(err, token.ErrIssuer):
		return WrongIssuer
	}
	return BadToken
}

// IsNavigation reports a browser page load, which gets a redirect to sign in
// rather than a 401: GET or HEAD, an Accept naming text/html, no
// X-Requested-With. method is the original request's (ForwardAuth passes it
// in X-Forwarded-Method).
func IsNavigation(method string, h http.Header) bool {
	if method != http.MethodGet && method != http.MethodHead {
		return false
	}
	if len(h["X-Requested-With"]) > 0 {
		return false
	}
	for _, a := range h["Accept"] {
		if strings.Contains(strings.ToLower(a), "text/html") {
			return true
		}
	}
	return false
}

// JoinGroups joins groups for the groups header, leaving out any group
// whose name contains the separator (or is empty): the backend splits the
// header on the separator, so a group named "x,admins" would read as
// "admins" (LDAP DNs contain commas).
func JoinGroups(groups []string, sep string) string {
	clean := true
	for _, g := range groups {
		if g == "" || strings.Contains(g, sep) || hasControl(g) {
			clean = false
			break
		}
	}
	if clean {
		return strings.Join(groups, sep)
	}
	kept := make([]string, 0, len(groups))
	for _, g := range groups {
		if g != "" && !strings.Contains(g, sep) && !hasControl(g) {
			kept = append(kept, g)
		}
	}
	return strings.Join(kept, sep)
}

// validSeparator admits one printable ASCII punctuation or space byte: a
// group that does not contain it then splits back unambiguously, which a
// longer separator cannot promise ("0" + "00" + "0").
func validSeparator(sep string) bool {
	if len(sep) != 1 {
		return false
	}
	c := sep[0]
	alnum := (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
	return c >= 0x20 && c < 0x7f && !alnum
}

func hasControl(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < 0x20 && c != '\t') || c == 0x7f {
			return true
		}
	}
	return false
}

// Sanitize replaces control characters a claim could carry with spaces
// (a newline would make the proxy refuse the request or, worse, split a
// header) and trims the result.
func Sanitize(v string) string {
	if !hasControl(v) {
		return strings.TrimSpace(v)
	}
	b := make([]byte, 0, len(v))
	for i := 0; i < len(v); i++ {
		c := v[i]
		if (c < 0x20 && c != '\t') || c == 0x7f {
			c = ' '
		}
		b = append(b, c)
	}
	return strings.TrimSpace(string(b))
}

// SplitList trims entries, splits any that still hold commas (Traefik's
// decoder and /verify's query give "a,b") and drops empties.
func SplitList(in []string) []string {
	var out []string
	for _, e := range in {
		for _, part := range strings.Split(e, ",") {
			part = strings.TrimSpace(part)
			if part != "" {
				out = append(out, part)
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

// NormalizeHeader folds a header name the way CGI/PHP/WSGI backends do: case
// and "_" versus "-" do not matter.
func NormalizeHeader(h string) string {
	return strings.ToLower(strings.ReplaceAll(h, "_", "-"))
}

// tokenChars are the RFC 7230 tchar characters (header and cookie names).
const tokenChars = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"

// ValidToken reports an RFC 7230 token (a header or cookie name).
func ValidToken(s string) bool {
	return s != "" && strings.Trim(s, tokenChars) == ""
}
