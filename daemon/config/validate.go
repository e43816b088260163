package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/edgepass/edgepass/daemon/claimpath"
	"github.com/edgepass/edgepass/daemon/returnurl"
)

// MinAdminTokenLength refuses guessable admin tokens (and edge passwords).
const MinAdminTokenLength = 16

var (
	bucketName = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)
	// cookieToken is RFC 6265's cookie-name (an RFC 7230 token).
	cookieToken = regexp.MustCompile("^[!#$%&'*+\\-.^_`|~0-9A-Za-z]+$")
	hostLabel   = regexp.MustCompile(`^[A-Za-z0-9_]([A-Za-z0-9_-]*[A-Za-z0-9_])?$`)
	edgeName    = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
)

// DaemonNATSUser is the embedded NATS server's user for the daemon itself.
const DaemonNATSUser = "edgepass-daemon"

// Validate checks every setting and reports all problems at once, each
// naming the setting and how to set it. Each section has its own check,
// and all of them add to one list of problems, in this order.
func (c *Configuration) Validate() error {
	var p problems
	c.validateListeners(&p)
	c.validateOIDC(&p)
	c.validateSession(&p)
	c.validateKeys(&p)
	c.validateNATS(&p)
	c.validateAdmin(&p)
	c.validateEvents(&p)
	c.validateLog(&p)
	return errors.Join(p...)
}

// problems collects what Validate finds, so that a configuration with
// several mistakes is fixed in one round.
type problems []error

// bad records a problem with setting.
func (p *problems) bad(setting, format string, args ...any) {
	*p = append(*p, fmt.Errorf("config: %s: %s", setting, fmt.Sprintf(format, args...)))
}

// required records setting as missing when value is blank, and reports
// whether it is set (so further checks of it make sense).
func (p *problems) required(setting, value string) bool {
	if strings.TrimSpace(value) == "" {
		p.bad(setting, "required; set %s", hint(setting))
		return false
	}
	return true
}

// validateListeners checks publicURL, listen and trustedProxies: where
// browsers reach the daemon and who may speak for them.
func (c *Configuration) validateListeners(p *problems) {
	if p.required("publicURL", c.PublicURL) {
		if err := checkBaseURL(c.PublicURL); err != nil {
			p.bad("publicURL", "%v; e.g. https://auth.example.com", err)
		}
	}
	if p.required("listen", c.Listen) {
		if err := checkListen(c.Listen); err != nil {
			p.bad("listen", "%v; e.g. 127.0.0.1:8000 or :8000", err)
		}
	}
	for _, addr := range c.TrustedProxies {
		if !validAddrOrCIDR(addr) {
			p.bad("trustedProxies", "%q is not an IP address or CIDR; e.g. 127.0.0.1/32, 10.0.0.0/8 or fd00::/8", addr)
		}
	}
}

// validateOIDC checks oidc.*: the provider, the client and the claim
// mapping.
func (c *Configuration) validateOIDC(p *problems) {
	o := &c.OIDC
	if p.required("oidc.issuer", o.Issuer) {
		if err := checkBaseURL(o.Issuer); err != nil {
			p.bad("oidc.issuer", "%v; e.g. https://idp.example.com/realms/main", err)
		}
	}
	p.required("oidc.clientID", o.ClientID)
	if !slices.Contains(o.Scopes, "openid") {
		p.bad("oidc.scopes", "must include openid (got %q)", o.Scopes)
	}
	checkGroupsInclude(o.GroupsInclude, o.RequiredGroups, p)
	checkClaimPaths(o, p)
}

// validateSession checks session.*: lifetime, refresh and the login rate
// limit here, the cookie and the return URLs in their own checks.
func (c *Configuration) validateSession(p *problems) {
	s := &c.Session
	if lifetime := time.Duration(s.Lifetime); lifetime < time.Minute {
		p.bad("session.lifetime", "must be at least 1m (got %s)", lifetime)
	}
	c.validateCookie(p)
	c.validateReturnURLs(p)
	if s.RefreshInterval < 0 {
		p.bad("session.refreshInterval", "must not be negative")
	}
	if s.LoginRateLimit < 0 {
		p.bad("session.loginRateLimit", "must not be negative (0 turns the limit off); requests per minute per client, e.g. 60")
	}
	if s.LoginRateBurst < 0 {
		p.bad("session.loginRateBurst", "must not be negative; requests a client may send at once, e.g. 20")
	}
}

// validateCookie checks the session cookie's name and domain, and that
// browsers will keep it when publicURL sets it.
func (c *Configuration) validateCookie(p *problems) {
	s := &c.Session
	if !cookieToken.MatchString(s.CookieName) {
		p.bad("session.cookieName", "%q is not a valid cookie name", s.CookieName)
	}
	if d := s.CookieDomain; d != "" {
		if err := checkHost(strings.TrimPrefix(d, ".")); err != nil {
			p.bad("session.cookieDomain", "%v; a host name like example.com (no scheme, no port)", err)
		}
	}
	pu, err := url.Parse(c.PublicURL)
	if err != nil || pu.Host == "" {
		return // validateListeners reported it
	}
	host := strings.ToLower(pu.Hostname())
	if s.CookieSecure && pu.Scheme == "http" && !loopbackHost(host) {
		p.bad("session.cookieSecure", "publicURL %s is plain http, and browsers drop a Secure cookie set over http, so every sign-in would loop; "+
			"serve the daemon over https (publicURL https://…) or, for a test setup, set session.cookieSecure=false", c.PublicURL)
	}
	if d := strings.ToLower(strings.TrimPrefix(s.CookieDomain, ".")); d != "" && host != d && !strings.HasSuffix(host, "."+d) {
		p.bad("session.cookieDomain", "%q does not contain the publicURL host %q, so browsers would refuse the session cookie; use a parent domain of %s", s.CookieDomain, host, host)
	}
}

// validateReturnURLs checks where a login may return to:
// session.allowedDomains and session.defaultRedirect.
func (c *Configuration) validateReturnURLs(p *problems) {
	s := &c.Session
	if len(s.AllowedDomains) == 0 {
		p.bad("session.allowedDomains", "required; set %s", hint("session.allowedDomains"))
	}
	for _, d := range s.AllowedDomains {
		if _, err := returnurl.New([]string{d}); err != nil {
			p.bad("session.allowedDomains", "%v", err)
		}
	}
	if s.DefaultRedirect == "" {
		return
	}
	u, err := url.Parse(s.DefaultRedirect)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		p.bad("session.defaultRedirect", "%q must be an absolute http(s) URL", s.DefaultRedirect)
		return
	}
	if rp, err := returnurl.New(s.AllowedDomains); err == nil {
		if _, ok := rp.Check(s.DefaultRedirect); !ok {
			p.bad("session.defaultRedirect", "host %q is not in session.allowedDomains", u.Hostname())
		}
	}
}

// validateKeys checks keys.* and dataDir, where the encryption key lives
// by default.
func (c *Configuration) validateKeys(p *problems) {
	if r := time.Duration(c.Keys.RotationInterval); r < 0 || (r > 0 && r < time.Minute) {
		p.bad("keys.rotationInterval", "must be 0 (on command only) or at least 1m (got %s)", r)
	}
	if c.Keys.ClockSkew < 0 {
		p.bad("keys.clockSkew", "must not be negative")
	}
	p.required("dataDir", c.DataDir)
	p.required("keys.encryptionKeyFile", c.Keys.EncryptionKeyFile)
}

// validateNATS checks nats.*: the embedded server or the external
// connection, whichever is in use, then replicas and bucket names.
func (c *Configuration) validateNATS(p *problems) {
	n := &c.NATS
	if n.Embedded.Enabled {
		validateEmbeddedNATS(n, p)
	} else {
		validateExternalNATS(n, p)
	}
	if n.Replicas < 1 || n.Replicas > 5 {
		p.bad("nats.replicas", "must be between 1 and 5 (got %d)", n.Replicas)
	}
	buckets := map[string]string{}
	for _, b := range []struct{ setting, name string }{
		{"nats.edgeBucket", n.EdgeBucket}, {"nats.sessionBucket", n.SessionBucket}, {"nats.keyBucket", n.KeyBucket},
	} {
		if !bucketName.MatchString(b.name) {
			p.bad(b.setting, "%q: use letters, digits, - and _", b.name)
			continue
		}
		if other, dup := buckets[b.name]; dup {
			p.bad(b.setting, "%q is already used by %s; each bucket needs its own name", b.name, other)
		}
		buckets[b.name] = b.setting
	}
}

// validateEmbeddedNATS checks nats.embedded.*, and that no external
// server is configured besides.
func validateEmbeddedNATS(n *NATS, p *problems) {
	e := &n.Embedded
	p.required("nats.embedded.dataDir", e.DataDir)
	if e.Listen != "" {
		if err := checkListen(e.Listen); err != nil {
			p.bad("nats.embedded.listen", "%v; e.g. 127.0.0.1:4222", err)
		}
	}
	if len(n.URLs) > 0 {
		p.bad("nats.urls", "set only with nats.embedded.enabled=false (the daemon connects to its embedded server itself)")
	}
	if len(e.Edges) == 0 && e.Listen != "" {
		p.bad("nats.embedded.edges", "required when nats.embedded.listen is set: the NATS users the Traefik edges log in as (e.g. [edge])")
	}
	seen := map[string]bool{}
	for _, name := range e.Edges {
		switch {
		case !edgeName.MatchString(name):
			p.bad("nats.embedded.edges", "%q: use 1 to 64 letters, digits, - and _ (it names the edge's NATS user, inbox and consumers)", name)
		case name == DaemonNATSUser:
			p.bad("nats.embedded.edges", "%q is the daemon's own NATS user; pick another name", name)
		case seen[name]:
			p.bad("nats.embedded.edges", "%q is listed twice", name)
		}
		seen[name] = true
	}
}

// validateExternalNATS checks the connection to an external NATS: its
// URLs, one way of authenticating, and that the files it names exist.
func validateExternalNATS(n *NATS, p *problems) {
	if len(n.URLs) == 0 {
		p.bad("nats.urls", "required when nats.embedded.enabled=false; set %s (e.g. nats://nats:4222)", hint("nats.urls"))
	}
	for _, raw := range n.URLs {
		if err := checkNATSURL(raw); err != nil {
			p.bad("nats.urls", "%q: %v", raw, err)
		}
	}
	if n.Token != "" && (n.User != "" || n.CredentialsFile != "") {
		p.bad("nats.token", "use one of token, user/password or credentialsFile")
	}
	if n.User != "" && n.CredentialsFile != "" {
		p.bad("nats.user", "use one of token, user/password or credentialsFile")
	}
	if n.Password != "" && n.User == "" {
		p.bad("nats.password", "set together with nats.user")
	}
	for _, f := range []struct{ setting, path string }{
		{"nats.credentialsFile", n.CredentialsFile}, {"nats.caFile", n.CAFile},
	} {
		if f.path == "" {
			continue
		}
		if _, err := os.Stat(f.path); err != nil {
			p.bad(f.setting, "%v", err)
		}
	}
}

// validateAdmin checks admin.*: the listener, the tokens and the console.
func (c *Configuration) validateAdmin(p *problems) {
	if p.required("admin.listen", c.Admin.Listen) {
		if err := checkListen(c.Admin.Listen); err != nil {
			p.bad("admin.listen", "%v; e.g. 127.0.0.1:8001", err)
		} else if c.Admin.Listen == c.Listen {
			p.bad("admin.listen", "must differ from listen (the admin API gets its own listener)")
		}
	}
	switch {
	case c.Admin.Token == "" && len(c.Admin.Tokens) == 0:
		p.bad("admin.token", "required (or admin.tokens); set --admin.tokenFile or EDGEPASS_ADMIN_TOKEN (at least %d characters, e.g. openssl rand -hex 32)", MinAdminTokenLength)
	case c.Admin.Token != "" && len(c.Admin.Token) < MinAdminTokenLength:
		p.bad("admin.token", "too short: use at least %d characters (e.g. openssl rand -hex 32)", MinAdminTokenLength)
	}
	c.validateAdminTokens(p)
	c.validateConsole(p)
}

// validateLog checks log.level and log.format.
func (c *Configuration) validateLog(p *problems) {
	switch strings.ToLower(c.Log.Level) {
	case "debug", "info", "warn", "warning", "error":
	default:
		p.bad("log.level", "%q: use debug, info, warn or error", c.Log.Level)
	}
	switch strings.ToLower(c.Log.Format) {
	case "text", "json":
	default:
		p.bad("log.format", "%q: use text or json", c.Log.Format)
	}
}

// validAddrOrCIDR reports whether s is an IP address or a CIDR prefix.
func validAddrOrCIDR(s string) bool {
	if strings.Contains(s, "/") {
		_, err := netip.ParsePrefix(s)
		return err == nil
	}
	_, err := netip.ParseAddr(s)
	return err == nil
}

// checkGroupsInclude checks oidc.groupsInclude's patterns (exact names, or
// prefixes ending in "*") and that they keep every required group: the
// filter applies first, so a required group it drops locks everyone out.
func checkGroupsInclude(include, required []string, p *problems) {
	all := len(include) == 0
	var exact, prefixes []string
	for _, pattern := range include {
		body, prefix := strings.CutSuffix(pattern, "*")
		switch {
		case pattern == "" || strings.TrimSpace(pattern) != pattern:
			p.bad("oidc.groupsInclude", "%q: give a group name, or a prefix ending in * (no surrounding spaces)", pattern)
			return
		case strings.Contains(body, "*"):
			p.bad("oidc.groupsInclude", "%q: \"*\" may only end a prefix, e.g. team-*", pattern)
			return
		case prefix && body == "":
			all = true
		case prefix:
			prefixes = append(prefixes, body)
		default:
			exact = append(exact, pattern)
		}
	}
	if all {
		return
	}
	for _, g := range required {
		kept := slices.Contains(exact, g) || slices.ContainsFunc(prefixes, func(pre string) bool { return strings.HasPrefix(g, pre) })
		if !kept {
			p.bad("oidc.requiredGroups", "%q is not kept by oidc.groupsInclude %q, so nobody could sign in; add it to oidc.groupsInclude", g, include)
		}
	}
}

// checkClaimPaths checks oidc.groupsClaim and oidc.userClaims (package
// claimpath's syntax) and that usernameClaim, their older form, does not
// contradict userClaims.
func checkClaimPaths(o *OIDC, p *problems) {
	if len(o.GroupsClaim) == 0 {
		p.bad("oidc.groupsClaim", "required: at least one claim path; set %s (e.g. groups, or realm_access.roles)", hint("oidc.groupsClaim"))
	}
	for _, raw := range o.GroupsClaim {
		if _, err := claimpath.Parse(raw); err != nil {
			p.bad("oidc.groupsClaim", "%v; write %s", err, claimpath.Syntax)
		}
	}
	if len(o.UserClaims) == 0 {
		p.bad("oidc.userClaims", "required: at least one claim; e.g. %s", strings.Join(DefaultUserClaims, ","))
	}
	for _, raw := range o.UserClaims {
		path, err := claimpath.Parse(raw)
		switch {
		case err != nil:
			p.bad("oidc.userClaims", "%v; write %s", err, claimpath.Syntax)
		case path.Keys():
			p.bad("oidc.userClaims", "%q: .keys() yields a list, and a user name is one string; name a string claim such as preferred_username", raw)
		}
	}
	if o.UsernameClaim != "" && !slices.Equal(o.UserClaims, usernameClaimOrder(o.UsernameClaim)) {
		p.bad("oidc.usernameClaim", "%q and oidc.userClaims %q are both set; usernameClaim is the older form of userClaims: [%s]; keep only userClaims",
			o.UsernameClaim, o.UserClaims, strings.Join(usernameClaimOrder(o.UsernameClaim), ", "))
	}
}

// usernameClaimOrder is what oidc.usernameClaim has always meant: that
// claim, else the email, else the sub.
func usernameClaimOrder(claim string) []string {
	out := []string{claim}
	for _, c := range DefaultUserClaims[1:] {
		if !slices.Contains(out, c) {
			out = append(out, c)
		}
	}
	return out
}

// loopbackHost reports whether browsers treat http://host as a secure
// context (where Secure cookies work without TLS).
func loopbackHost(host string) bool {
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func publicHost(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	return u.Hostname()
}

func checkBaseURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("not a URL: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("%q must start with http:// or https://", raw)
	}
	if u.Host == "" {
		return fmt.Errorf("%q has no host", raw)
	}
	if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return fmt.Errorf("%q must not carry a query, fragment or user info", raw)
	}
	return nil
}

func checkListen(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q is not host:port: %w", addr, err)
	}
	if port == "" {
		return fmt.Errorf("%q has no port", addr)
	}
	if host != "" && net.ParseIP(host) == nil {
		if err := checkHost(host); err != nil {
			return err
		}
	}
	return nil
}

func checkNATSURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return err
	}
	switch u.Scheme {
	case "nats", "tls", "ws", "wss":
	default:
		return errors.New("use nats://host:port or tls://host:port")
	}
	if u.Host == "" {
		return errors.New("no host")
	}
	return nil
}

func checkHost(h string) error {
	if h == "" {
		return errors.New("empty host")
	}
	if net.ParseIP(h) != nil {
		return nil
	}
	if len(h) > 253 {
		return errors.New("host name too long")
	}
	for _, label := range strings.Split(h, ".") {
		if !hostLabel.MatchString(label) {
			return fmt.Errorf("%q is not a valid host name", h)
		}
	}
	return nil
}
