package oidcflow

import (
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
)

// maxReturnURL bounds a return URL; a longer one is refused, not truncated.
const maxReturnURL = 4096

// ReturnURLPolicy decides where the daemon may send a browser after login or
// logout, so that /login?rd= is not an open redirect.
type ReturnURLPolicy struct {
	exact    map[string]bool
	suffixes []string // ".example.com" for "*.example.com"
}

// NewReturnURLPolicy accepts host names, IP literals and "*.domain" entries
// (session.allowedDomains). Entries carry no scheme, port or path.
func NewReturnURLPolicy(allowedDomains []string) (*ReturnURLPolicy, error) {
	p := &ReturnURLPolicy{exact: map[string]bool{}}
	for _, d := range allowedDomains {
		e := strings.ToLower(strings.TrimSpace(d))
		e = strings.TrimSuffix(strings.TrimPrefix(e, "["), "]")
		if rest, ok := strings.CutPrefix(e, "*."); ok {
			if !validHostName(rest) || !strings.Contains(rest, ".") {
				return nil, fmt.Errorf("session.allowedDomains: %q is not a valid wildcard; use \"*.example.com\"", d)
			}
			p.suffixes = append(p.suffixes, "."+rest)
			continue
		}
		if net.ParseIP(e) == nil && !validHostName(e) {
			return nil, fmt.Errorf("session.allowedDomains: %q is not a host name, IP address or \"*.domain\" wildcard (no scheme, port or path)", d)
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
func (p *ReturnURLPolicy) HostAllowed(host string) bool {
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
func (p *ReturnURLPolicy) Check(raw string) (string, bool) {
	if raw == "" || len(raw) > maxReturnURL {
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
	return u.String(), true
}
