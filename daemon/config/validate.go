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
// naming the setting and how to set it.
func (c *Configuration) Validate() error {
	var errs []error
	bad := func(setting, format string, args ...any) {
		errs = append(errs, fmt.Errorf("config: %s: %s", setting, fmt.Sprintf(format, args...)))
	}
	required := func(setting, value string) bool {
		if strings.TrimSpace(value) == "" {
			bad(setting, "required; set %s", hint(setting))
			return false
		}
		return true
	}

	if required("publicURL", c.PublicURL) {
		if err := checkBaseURL(c.PublicURL); err != nil {
			bad("publicURL", "%v; e.g. https://auth.example.com", err)
		}
	}
	if required("listen", c.Listen) {
		if err := checkListen(c.Listen); err != nil {
			bad("listen", "%v; e.g. 127.0.0.1:8000 or :8000", err)
		}
	}

	// OIDC.
	if required("oidc.issuer", c.OIDC.Issuer) {
		if err := checkBaseURL(c.OIDC.Issuer); err != nil {
			bad("oidc.issuer", "%v; e.g. https://idp.example.com/realms/main", err)
		}
	}
	required("oidc.clientID", c.OIDC.ClientID)
	if !slices.Contains(c.OIDC.Scopes, "openid") {
		bad("oidc.scopes", "must include openid (got %q)", c.OIDC.Scopes)
	}
	checkGroupsInclude(c.OIDC.GroupsInclude, c.OIDC.RequiredGroups, bad)
	checkClaimPaths(&c.OIDC, bad)

	// Session.
	lifetime := time.Duration(c.Session.Lifetime)
	if lifetime < time.Minute {
		bad("session.lifetime", "must be at least 1m (got %s)", lifetime)
	}
	if !cookieToken.MatchString(c.Session.CookieName) {
		bad("session.cookieName", "%q is not a valid cookie name", c.Session.CookieName)
	}
	if d := c.Session.CookieDomain; d != "" {
		if err := checkHost(strings.TrimPrefix(d, ".")); err != nil {
			bad("session.cookieDomain", "%v; a host name like example.com (no scheme, no port)", err)
		}
	}
	if pu, err := url.Parse(c.PublicURL); err == nil && pu.Host != "" {
		host := strings.ToLower(pu.Hostname())
		if c.Session.CookieSecure && pu.Scheme == "http" && !loopbackHost(host) {
			bad("session.cookieSecure", "publicURL %s is plain http, and browsers drop a Secure cookie set over http, so every sign-in would loop; "+
				"serve the daemon over https (publicURL https://…) or, for a test setup, set session.cookieSecure=false", c.PublicURL)
		}
		if d := strings.ToLower(strings.TrimPrefix(c.Session.CookieDomain, ".")); d != "" && host != d && !strings.HasSuffix(host, "."+d) {
			bad("session.cookieDomain", "%q does not contain the publicURL host %q, so browsers would refuse the session cookie; use a parent domain of %s", c.Session.CookieDomain, host, host)
		}
	}
	if len(c.Session.AllowedDomains) == 0 {
		bad("session.allowedDomains", "required; set %s", hint("session.allowedDomains"))
	}
	for _, d := range c.Session.AllowedDomains {
		if _, err := returnurl.New([]string{d}); err != nil {
			bad("session.allowedDomains", "%v", err)
		}
	}
	if c.Session.DefaultRedirect != "" {
		u, err := url.Parse(c.Session.DefaultRedirect)
		switch {
		case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
			bad("session.defaultRedirect", "%q must be an absolute http(s) URL", c.Session.DefaultRedirect)
		default:
			if p, err := returnurl.New(c.Session.AllowedDomains); err == nil {
				if _, ok := p.Check(c.Session.DefaultRedirect); !ok {
					bad("session.defaultRedirect", "host %q is not in session.allowedDomains", u.Hostname())
				}
			}
		}
	}
	if c.Session.RefreshInterval < 0 {
		bad("session.refreshInterval", "must not be negative")
	}
	if c.Session.LoginRateLimit < 0 {
		bad("session.loginRateLimit", "must not be negative (0 turns the limit off); requests per minute per client, e.g. 60")
	}
	if c.Session.LoginRateBurst < 0 {
		bad("session.loginRateBurst", "must not be negative; requests a client may send at once, e.g. 20")
	}
	for _, p := range c.TrustedProxies {
		if !validAddrOrCIDR(p) {
			bad("trustedProxies", "%q is not an IP address or CIDR; e.g. 127.0.0.1/32, 10.0.0.0/8 or fd00::/8", p)
		}
	}

	// Keys.
	if r := time.Duration(c.Keys.RotationInterval); r < 0 || (r > 0 && r < time.Minute) {
		bad("keys.rotationInterval", "must be 0 (on command only) or at least 1m (got %s)", r)
	}
	if c.Keys.ClockSkew < 0 {
		bad("keys.clockSkew", "must not be negative")
	}
	required("dataDir", c.DataDir)
	required("keys.encryptionKeyFile", c.Keys.EncryptionKeyFile)

	// NATS.
	n := c.NATS
	if n.Embedded.Enabled {
		required("nats.embedded.dataDir", n.Embedded.DataDir)
		if n.Embedded.Listen != "" {
			if err := checkListen(n.Embedded.Listen); err != nil {
				bad("nats.embedded.listen", "%v; e.g. 127.0.0.1:4222", err)
			}
		}
		if len(n.URLs) > 0 {
			bad("nats.urls", "set only with nats.embedded.enabled=false (the daemon connects to its embedded server itself)")
		}
		if len(n.Embedded.Edges) == 0 && n.Embedded.Listen != "" {
			bad("nats.embedded.edges", "required when nats.embedded.listen is set: the NATS users the Traefik edges log in as (e.g. [edge])")
		}
		seenEdge := map[string]bool{}
		for _, e := range n.Embedded.Edges {
			switch {
			case !edgeName.MatchString(e):
				bad("nats.embedded.edges", "%q: use 1 to 64 letters, digits, - and _ (it names the edge's NATS user, inbox and consumers)", e)
			case e == DaemonNATSUser:
				bad("nats.embedded.edges", "%q is the daemon's own NATS user; pick another name", e)
			case seenEdge[e]:
				bad("nats.embedded.edges", "%q is listed twice", e)
			}
			seenEdge[e] = true
		}
	} else {
		if len(n.URLs) == 0 {
			bad("nats.urls", "required when nats.embedded.enabled=false; set %s (e.g. nats://nats:4222)", hint("nats.urls"))
		}
		for _, raw := range n.URLs {
			if err := checkNATSURL(raw); err != nil {
				bad("nats.urls", "%q: %v", raw, err)
			}
		}
		if n.Token != "" && (n.User != "" || n.CredentialsFile != "") {
			bad("nats.token", "use one of token, user/password or credentialsFile")
		}
		if n.User != "" && n.CredentialsFile != "" {
			bad("nats.user", "use one of token, user/password or credentialsFile")
		}
		if n.Password != "" && n.User == "" {
			bad("nats.password", "set together with nats.user")
		}
		for setting, path := range map[string]string{"nats.credentialsFile": n.CredentialsFile, "nats.caFile": n.CAFile} {
			if path == "" {
				continue
			}
			if _, err := os.Stat(path); err != nil {
				bad(setting, "%v", err)
			}
		}
	}
	if n.Replicas < 1 || n.Replicas > 5 {
		bad("nats.replicas", "must be between 1 and 5 (got %d)", n.Replicas)
	}
	buckets := map[string]string{}
	for _, b := range []struct{ setting, name string }{
		{"nats.edgeBucket", n.EdgeBucket}, {"nats.sessionBucket", n.SessionBucket}, {"nats.keyBucket", n.KeyBucket},
	} {
		if !bucketName.MatchString(b.name) {
			bad(b.setting, "%q: use letters, digits, - and _", b.name)
			continue
		}
		if other, dup := buckets[b.name]; dup {
			bad(b.setting, "%q is already used by %s; each bucket needs its own name", b.name, other)
		}
		buckets[b.name] = b.setting
	}

	// Admin.
	if required("admin.listen", c.Admin.Listen) {
		if err := checkListen(c.Admin.Listen); err != nil {
			bad("admin.listen", "%v; e.g. 127.0.0.1:8001", err)
		} else if c.Admin.Listen == c.Listen {
			bad("admin.listen", "must differ from listen (the admin API gets its own listener)")
		}
	}
	switch {
	case c.Admin.Token == "" && len(c.Admin.Tokens) == 0:
		bad("admin.token", "required (or admin.tokens); set --admin.tokenFile or EDGEPASS_ADMIN_TOKEN (at least %d characters, e.g. openssl rand -hex 32)", MinAdminTokenLength)
	case c.Admin.Token != "" && len(c.Admin.Token) < MinAdminTokenLength:
		bad("admin.token", "too short: use at least %d characters (e.g. openssl rand -hex 32)", MinAdminTokenLength)
	}
	c.validateAdminConsole(bad)

	switch strings.ToLower(c.Log.Level) {
	case "debug", "info", "warn", "warning", "error":
	default:
		bad("log.level", "%q: use debug, info, warn or error", c.Log.Level)
	}
	switch strings.ToLower(c.Log.Format) {
	case "text", "json":
	default:
		bad("log.format", "%q: use text or json", c.Log.Format)
	}
	return errors.Join(errs...)
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
func checkGroupsInclude(include, required []string, bad func(setting, format string, args ...any)) {
	all := len(include) == 0
	var exact, prefixes []string
	for _, p := range include {
		body, prefix := strings.CutSuffix(p, "*")
		switch {
		case p == "" || strings.TrimSpace(p) != p:
			bad("oidc.groupsInclude", "%q: give a group name, or a prefix ending in * (no surrounding spaces)", p)
			return
		case strings.Contains(body, "*"):
			bad("oidc.groupsInclude", "%q: \"*\" may only end a prefix, e.g. team-*", p)
			return
		case prefix && body == "":
			all = true
		case prefix:
			prefixes = append(prefixes, body)
		default:
			exact = append(exact, p)
		}
	}
	if all {
		return
	}
	for _, g := range required {
		kept := slices.Contains(exact, g) || slices.ContainsFunc(prefixes, func(p string) bool { return strings.HasPrefix(g, p) })
		if !kept {
			bad("oidc.requiredGroups", "%q is not kept by oidc.groupsInclude %q, so nobody could sign in; add it to oidc.groupsInclude", g, include)
		}
	}
}

// checkClaimPaths checks oidc.groupsClaim and oidc.userClaims (package
// claimpath's syntax) and that usernameClaim, their older form, does not
// contradict userClaims.
func checkClaimPaths(o *OIDC, bad func(setting, format string, args ...any)) {
	if len(o.GroupsClaim) == 0 {
		bad("oidc.groupsClaim", "required: at least one claim path; set %s (e.g. groups, or realm_access.roles)", hint("oidc.groupsClaim"))
	}
	for _, raw := range o.GroupsClaim {
		if _, err := claimpath.Parse(raw); err != nil {
			bad("oidc.groupsClaim", "%v; write %s", err, claimpath.Syntax)
		}
	}
	if len(o.UserClaims) == 0 {
		bad("oidc.userClaims", "required: at least one claim; e.g. %s", strings.Join(DefaultUserClaims, ","))
	}
	for _, raw := range o.UserClaims {
		p, err := claimpath.Parse(raw)
		switch {
		case err != nil:
			bad("oidc.userClaims", "%v; write %s", err, claimpath.Syntax)
		case p.Keys():
			bad("oidc.userClaims", "%q: .keys() yields a list, and a user name is one string; name a string claim such as preferred_username", raw)
		}
	}
	if o.UsernameClaim != "" && !slices.Equal(o.UserClaims, usernameClaimOrder(o.UsernameClaim)) {
		bad("oidc.usernameClaim", "%q and oidc.userClaims %q are both set; usernameClaim is the older form of userClaims: [%s]; keep only userClaims",
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
