package edgepass

import (
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/edgepass/edgepass/plugin/policy"
)

var (
	bodyUnauthorized = []byte(`{"error":"authentication required"}` + "\n")
	bodyForbidden    = []byte(`{"error":"forbidden"}` + "\n")
	bodyStale        = []byte(`{"error":"edge state unavailable","reason":"stale","detail":"this edge has not heard from NATS for longer than maxStaleness; check Traefik's log for the edgepass NATS client's errors"}` + "\n")
	bodyNotSynced    = []byte(`{"error":"edge state unavailable","reason":"not_synced","detail":"this edge has not completed its first sync with NATS (requireSync); check the middleware's nats settings and Traefik's log for the edgepass NATS client's errors"}` + "\n")
	bodyNoKeys       = []byte(`{"error":"edge state unavailable","reason":"no_keys","detail":"this edge has no key to verify sessions with: none arrived over NATS and jwks is empty; check the middleware's nats settings and trustAnchors"}` + "\n")
	bodyNoAssertion  = []byte(`{"error":"identity assertion unavailable","reason":"assertion_unavailable","detail":"this route sends the backend an identity assertion (assertionHeader) and the daemon did not mint one; check that the daemon runs and that the edge's NATS user may publish to edgepass.assert.<bucket>.<edge>"}` + "\n")
)

// refuse answers a refused request as its reason asks — sign in (302 or
// 401), forbidden (403), or unavailable (503, saying why) — and counts and
// (with logLevel debug) logs the reason.
func (m *Middleware) refuse(rw http.ResponseWriter, r *http.Request, reason string) {
	m.noteRefusal(r, reason)
	switch reason {
	case policy.NotAllowed:
		writeJSON(rw, http.StatusForbidden, bodyForbidden)
	case policy.Stale:
		writeJSON(rw, http.StatusServiceUnavailable, bodyStale)
	case policy.NotSynced:
		writeJSON(rw, http.StatusServiceUnavailable, bodyNotSynced)
	case policy.NoKeys:
		writeJSON(rw, http.StatusServiceUnavailable, bodyNoKeys)
	case policy.AssertionUnavailable:
		writeJSON(rw, http.StatusServiceUnavailable, bodyNoAssertion)
	default:
		m.unauthenticated(rw, r, reason)
	}
}

// refusalLogsPerSecond bounds the refusal lines one middleware logs.
const refusalLogsPerSecond = 5

// noteRefusal counts the reason on the edge state (reported in the edge's
// heartbeat) and logs it when logLevel is debug, rate-limited; never the
// token, cookie or query string.
func (m *Middleware) noteRefusal(r *http.Request, reason string) {
	if m.state != nil {
		m.state.CountRefusal(reason)
	}
	if !m.s.logRefusals {
		return
	}
	now := m.clock().Unix()
	m.logMu.Lock()
	if m.logSecond != now {
		m.logSecond, m.logCount = now, 0
	}
	m.logCount++
	n := m.logCount
	m.logMu.Unlock()
	if n > refusalLogsPerSecond {
		return
	}
	path := "/"
	if r.URL != nil {
		path = r.URL.Path
	}
	logf("%s: refused %s %s%s: %s", m.name, r.Method, r.Host, clipPath(path), reason)
}

// logf writes diagnostics to Traefik's log (Yaegi maps os.Stderr to it); never
// called with tokens, cookies or secrets.
func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "edgepass: "+format+"\n", args...)
}

// logThrottle logs one kind of configuration problem at most once per 10
// seconds per process: it recurs on every request until fixed.
type logThrottle struct {
	prefix string
	mu     sync.Mutex
	at     time.Time
}

func (t *logThrottle) log(msg string) {
	t.mu.Lock()
	now := time.Now()
	quiet := now.Sub(t.at) < 10*time.Second
	if !quiet {
		t.at = now
	}
	t.mu.Unlock()
	if !quiet {
		logf("%s: %s", t.prefix, msg)
	}
}

func clipPath(p string) string {
	if len(p) > 200 {
		return p[:200] + "…"
	}
	return p
}

// hostChars are the characters a host[:port] may contain (names, IPv4, [IPv6]).
const hostChars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-:[]"

// unauthenticated sends browsers to the login page and answers everything else
// with 401, per contracts.md; the WWW-Authenticate header says why a token
// was refused (RFC 6750 error="invalid_token").
func (m *Middleware) unauthenticated(rw http.ResponseWriter, r *http.Request, reason string) {
	h := rw.Header()
	if policy.IsNavigation(r.Method, r.Header) {
		h.Set("Cache-Control", "no-store")
		h.Set("Location", m.loginRedirect(r))
		rw.WriteHeader(http.StatusFound)
		return
	}
	h.Set("WWW-Authenticate", policy.Challenge(reason))
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
