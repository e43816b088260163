// Package returnurl decides where the daemon may send a browser after login
// or logout (session.allowedDomains), so that ?rd= and the X-Forwarded-*
// headers /verify rebuilds a URL from are not an open redirect. It is the
// one implementation of the allowed-domain rule: configuration validation,
// the OIDC flow and /verify all use it.
package returnurl

import (
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
)

// MaxLength bounds a return URL; a longer one is refused, not truncated.
const MaxLength = 4096

// Policy is a list of allowed hosts. It is immutable and safe for
// concurrent use.
type Policy struct {
	exact    map[string]bool
	suffixes []string // ".example.com" for "*.example.com"
}

// New accepts host names, IP literals and "*.domain" entries (the
// session.allowedDomains setting). Entries carry no scheme, port or path;
// a bad entry is an error naming it.
func New(allowedDomains []string) (*Policy, error) {
	p := &Policy{exact: map[string]bool{}}
	for _, d := range allowedDomains {
		e := strings.ToLower(strings.TrimSpace(d))
		e = strings.TrimSuffix(strings.TrimPrefix(e, "["), "]")
		if rest, ok := strings.CutPrefix(e, "*."); ok {
			if !validHostName(rest) || !strings.Contains(rest, ".") {
				return nil, fmt.Errorf("%q is not a valid wildcard: a wildcard needs a domain with a dot, like \"*.example.com\"", d)
			}
			p.suffixes = append(p.suffixes, "."+rest)
			continue
		}
		if net.ParseIP(e) == nil && !validHostName(e) {
			return nil, fmt.Errorf("%q is not a host name, IP address or \"*.domain\" wildcard (no scheme, port or path)", d)
		}
		p.exact[e] = true
	}
	return p, nil
}

// validHostName accepts DNS-like names (letters, digits, '-', '_', dots),
// without empty labels or a trailing dot.
func validHostName(h string) bool {
	if h == "" || len(h) > 253 {
		return false
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// HostAllowed reports whether host (lower case, no port) is on the list.
func (p *Policy) HostAllowed(host string) bool {
	if p.exact[host] {
		return true
	}
	for _, s := range p.suffixes {
		if len(host) > len(s) && strings.HasSuffix(host, s) && validHostName(host) {
			return true
		}
	}
	return false
}

// Check returns the normalized URL when raw is an absolute http(s) URL to an
// allowed host. It refuses anything a browser could read differently from
// net/url: user info, backslashes, control characters and spaces, non-ASCII,
// percent-encoded or otherwise odd authorities, and every other scheme.
func (p *Policy) Check(raw string) (string, bool) {
	if raw == "" || len(raw) > MaxLength {
		return "", false
	}
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		if c <= ' ' || c >= 0x7f || c == '\\' {
			return "", false
		}
	}
	var rest string
	switch {
	case len(raw) >= 8 && strings.EqualFold(raw[:8], "https://"):
		rest = raw[8:]
	case len(raw) >= 7 && strings.EqualFold(raw[:7], "http://"):
		rest = raw[7:]
	default:
		return "", false
	}
	authority := rest
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		authority = rest[:i]
	}
	if authority == "" {
		return "", false
	}
	for i := 0; i < len(authority); i++ {
		c := authority[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '.' || c == '-' || c == '_' || c == ':' || c == '[' || c == ']') {
			return "", false
		}
	}
	u, err := url.Parse(raw)
	if err != nil || u.User != nil || u.Opaque != "" || u.Host != authority {
		return "", false
	}
	if s := strings.ToLower(u.Scheme); s != "http" && s != "https" {
		return "", false
	}
	if port := u.Port(); port != "" {
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 {
			return "", false
		}
	} else if strings.HasSuffix(authority, ":") {
		return "", false
	}
	if !p.HostAllowed(strings.ToLower(u.Hostname())) {
		return "", false
	}
	u.Scheme = strings.ToLower(u.Scheme)
	// Re-encoding can grow the URL (a '"' becomes %22): what is returned
	// must pass Check itself, so the length limit holds for it too.
	out := u.String()
	if len(out) > MaxLength {
		return "", false
	}
	return out, true
}
