package edgepass

import (
	"net/http"
	"net/url"
	"strings"
)

var (
	bodyUnauthorized = []byte(`{"error":"authentication required"}` + "\n")
	bodyForbidden    = []byte(`{"error":"forbidden"}` + "\n")
	bodyStale        = []byte(`{"error":"edge state unavailable"}` + "\n")
)

// hostChars are the characters a host[:port] may contain (names, IPv4, [IPv6]).
const hostChars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-:[]"

// unauthenticated sends browsers to the login page and answers everything else
// with 401, per contracts.md.
func (m *Middleware) unauthenticated(rw http.ResponseWriter, r *http.Request) {
	h := rw.Header()
	if isNavigation(r) {
		h.Set("Cache-Control", "no-store")
		h.Set("Location", m.loginRedirect(r))
		rw.WriteHeader(http.StatusFound)
		return
	}
	h.Set("WWW-Authenticate", `Bearer realm="edgepass"`)
	writeJSON(rw, http.StatusUnauthorized, bodyUnauthorized)
}

func writeJSON(rw http.ResponseWriter, status int, body []byte) {
	h := rw.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	rw.WriteHeader(status)
	_, _ = rw.Write(body)
}

// isNavigation reports a browser page load: GET/HEAD accepting HTML, not an XHR.
func isNavigation(r *http.Request) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return false
	}
	if len(r.Header["X-Requested-With"]) > 0 {
		return false
	}
	for _, a := range r.Header["Accept"] {
		if strings.Contains(a, "text/html") {
			return true
		}
	}
	return false
}

// loginRedirect is loginURL?rd=<escaped original URL>. Only the rd value depends
// on the request, and it is query-escaped, so the redirect always targets the
// login host; the daemon checks rd against its allowed domains.
func (m *Middleware) loginRedirect(r *http.Request) string {
	orig := originalURL(r)
	if orig == "" {
		return m.s.loginURL
	}
	return m.s.loginPrefix + url.QueryEscape(orig)
}

// originalURL rebuilds the URL the client asked for from X-Forwarded-Proto and
// X-Forwarded-Host (set by Traefik), falling back to r.TLS and r.Host; "" when
// no sane host is available.
func originalURL(r *http.Request) string {
	scheme := strings.ToLower(firstValue(r.Header["X-Forwarded-Proto"]))
	if scheme != "http" && scheme != "https" {
		scheme = "http"
		if r.TLS != nil {
			scheme = "https"
		}
	}
	host := firstValue(r.Header["X-Forwarded-Host"])
	if !validHost(host) {
		host = r.Host
		if !validHost(host) {
			return ""
		}
	}
	uri := r.RequestURI
	if !validRequestURI(uri) {
		uri = "/"
		if r.URL != nil && validRequestURI(r.URL.RequestURI()) {
			uri = r.URL.RequestURI()
		}
	}
	return scheme + "://" + host + uri
}

// validRequestURI accepts an origin-form request target ("/path?query") that
// parses; absolute-form, "*", "//host" and bad escapes are not used in rd.
func validRequestURI(u string) bool {
	if u == "" || u[0] != '/' || strings.HasPrefix(u, "//") {
		return false
	}
	_, err := url.ParseRequestURI(u)
	return err == nil
}

// firstValue is the first comma-separated element of the first header value.
func firstValue(vals []string) string {
	if len(vals) == 0 {
		return ""
	}
	v, _, _ := strings.Cut(vals[0], ",")
	return strings.TrimSpace(v)
}

// validHost accepts host, host:port, IPv4 and [IPv6] forms: the characters
// first (cheap), then the structure (brackets, port) as url.Parse sees it.
func validHost(h string) bool {
	if h == "" || len(h) > 261 || strings.Trim(h, hostChars) != "" {
		return false
	}
	u, err := url.Parse("http://" + h + "/")
	return err == nil && u.Host == h && u.Hostname() != "" && u.User == nil
}
