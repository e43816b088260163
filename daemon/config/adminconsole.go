package config

import (
	"fmt"
	"net"
	"net/url"
	"regexp"
	"strings"
	"time"
)

// AdminTokenName is the name the admin.token (or admin.tokenFile) token
// acts under in the audit trail: it is read-write.
const AdminTokenName = "admin"

// tokenName is what an admin token's name may hold: it is shown in the
// audit trail and the console.
var tokenName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// Secret is the token read from File by Load ("" before).
func (t AdminToken) Secret() string { return t.secret }

// readAdminTokens reads every admin.tokens[i].file.
func (c *Configuration) readAdminTokens() []error {
	var errs []error
	for i := range c.Admin.Tokens {
		t := &c.Admin.Tokens[i]
		setting := fmt.Sprintf("admin.tokens[%d].file", i)
		if t.File == "" {
			errs = append(errs, fmt.Errorf("config: %s: required: the file holding token %q (tokens are never given inline)", setting, t.Name))
			continue
		}
		s, err := ReadSecretFile(t.File)
		if err != nil {
			errs = append(errs, fmt.Errorf("config: %s: %w", setting, err))
			continue
		}
		t.secret = s
	}
	return errs
}

// deriveConsole fills admin.console.url from admin.listen.
func (c *Configuration) deriveConsole() {
	c.Admin.Console.URL = strings.TrimRight(c.Admin.Console.URL, "/")
	if c.Admin.Console.URL != "" {
		return
	}
	host, port, err := net.SplitHostPort(c.Admin.Listen)
	if err != nil {
		return
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	c.Admin.Console.URL = "http://" + net.JoinHostPort(host, port)
}

// validateAdminTokens checks admin.tokens: every token has its own name
// (admin.token is "admin") and its own long enough secret.
func (c *Configuration) validateAdminTokens(p *problems) {
	names := map[string]string{}
	secrets := map[string]string{}
	if c.Admin.Token != "" {
		names[AdminTokenName] = "admin.token"
		secrets[c.Admin.Token] = "admin.token"
	}
	for i, t := range c.Admin.Tokens {
		setting := fmt.Sprintf("admin.tokens[%d]", i)
		switch {
		case !tokenName.MatchString(t.Name):
			p.bad(setting+".name", "%q: use 1 to 64 letters, digits, ., - and _ (it names the token in the audit trail)", t.Name)
		case names[t.Name] != "":
			p.bad(setting+".name", "%q is already the name of %s; every token needs its own name", t.Name, names[t.Name])
		default:
			names[t.Name] = setting
		}
		if t.secret == "" {
			continue // readAdminTokens reported it
		}
		if len(t.secret) < MinAdminTokenLength {
			p.bad(setting+".file", "token %q is too short: use at least %d characters (e.g. openssl rand -hex 32)", t.Name, MinAdminTokenLength)
		}
		if other, dup := secrets[t.secret]; dup {
			p.bad(setting+".file", "token %q is the same as %s's; give each token its own secret so the audit trail can tell them apart", t.Name, other)
		}
		secrets[t.secret] = setting
	}
}

// validateConsole checks admin.console: only when it is enabled do its
// groups, URL and sign-in lifetime matter.
func (c *Configuration) validateConsole(p *problems) {
	con := &c.Admin.Console
	if con.Public && !con.Enabled {
		p.bad("admin.console.public", "set together with admin.console.enabled=true")
	}
	if !con.Enabled {
		return
	}
	if len(con.Groups) == 0 {
		p.bad("admin.console.groups", "required with the console: the IdP groups whose members may administer edgepass (e.g. [admins])")
	}
	for _, g := range con.Groups {
		if strings.TrimSpace(g) == "" {
			p.bad("admin.console.groups", "empty group name")
		}
	}
	checkGroupsKept("admin.console.groups", c.OIDC.GroupsInclude, con.Groups, p)
	if err := checkBaseURL(con.URL); err != nil {
		p.bad("admin.console.url", "%v; e.g. http://127.0.0.1:8001", err)
	} else if u, _ := url.Parse(con.URL); strings.Trim(u.Path, "/") != "" {
		p.bad("admin.console.url", "%q must have no path: the console is at <url>/console/", con.URL)
	}
	if l := time.Duration(con.SessionLifetime); l < 5*time.Minute || l > 7*24*time.Hour {
		p.bad("admin.console.sessionLifetime", "must be between 5m and 168h (got %s)", l)
	}
}

// validateEvents checks events.*: the audit trail's stream and how much
// of it is kept.
func (c *Configuration) validateEvents(p *problems) {
	ev := &c.Events
	if !bucketName.MatchString(ev.Stream) {
		p.bad("events.stream", "%q: use letters, digits, - and _", ev.Stream)
	}
	if time.Duration(ev.MaxAge) < time.Hour {
		p.bad("events.maxAge", "must be at least 1h (got %s); e.g. 2160h for 90 days", time.Duration(ev.MaxAge))
	}
	if ev.MaxBytes < 1<<20 {
		p.bad("events.maxBytes", "must be at least 1048576 (1 MiB) (got %d)", ev.MaxBytes)
	}
}

// checkGroupsKept reports groups oidc.groupsInclude filters out (nobody
// could then be in them).
func checkGroupsKept(setting string, include, groups []string, p *problems) {
	if len(include) == 0 {
		return
	}
	for _, g := range groups {
		kept := false
		for _, pattern := range include {
			if prefix, ok := strings.CutSuffix(pattern, "*"); ok && strings.HasPrefix(g, prefix) || pattern == g {
				kept = true
				break
			}
		}
		if !kept {
			p.bad(setting, "%q is not kept by oidc.groupsInclude %q, so nobody could be in it; add it to oidc.groupsInclude", g, include)
		}
	}
}
