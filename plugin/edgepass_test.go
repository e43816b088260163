package edgepass

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/edgepass/edgepass/plugin/edgestate"
	"github.com/edgepass/edgepass/plugin/natsedge"
	"github.com/edgepass/edgepass/plugin/token"
)

func TestValidTokenSetsIdentityHeaders(t *testing.T) {
	raw := sign(t, testClaims())
	tests := []struct {
		name string
		req  func() *http.Request
	}{
		{"cookie", func() *http.Request { return withCookie(browserRequest("/app"), raw) }},
		{"bearer", func() *http.Request {
			r := httptest.NewRequest(http.MethodPost, "/api", nil)
			r.Header.Set("Authorization", "Bearer "+raw)
			return r
		}},
		{"bearer lower-case scheme", func() *http.Request {
			r := httptest.NewRequest(http.MethodGet, "/api", nil)
			r.Header.Set("Authorization", "bearer "+raw)
			return r
		}},
		{"quoted cookie", func() *http.Request {
			r := httptest.NewRequest(http.MethodGet, "/api", nil)
			r.Header.Set("Cookie", `edgepass_session="`+raw+`"`)
			return r
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, rec, _ := newTest(t, nil)
			for round := 0; round < 2; round++ { // first seen, then cached
				rw := serve(m, tt.req())
				if rw.Code != http.StatusTeapot || rec.called != round+1 {
					t.Fatalf("round %d: status %d, next called %d", round, rw.Code, rec.called)
				}
				want := map[string]string{
					"X-Auth-User": "alice", "X-Auth-Email": "alice@example.com", "X-Auth-Groups": "dev,ops",
					"X-Auth-Name": "Alice Example", "X-Auth-Subject": "sub-alice",
				}
				for k, v := range want {
					if got := rec.header[k]; len(got) != 1 || got[0] != v {
						t.Fatalf("round %d: %s = %q, want %q", round, k, got, v)
					}
				}
			}
			if m.cache.len() != 1 || m.lines.len() != 1 {
				t.Fatalf("cache holds %d tokens and %d lines, want 1 and 1", m.cache.len(), m.lines.len())
			}
		})
	}
}

func TestUnconfiguredHeadersAreNotSetAndEmptyClaimsSkipped(t *testing.T) {
	m, rec, _ := newTest(t, func(c *Config) { c.NameHeader = ""; c.SubjectHeader = ""; c.GroupsSeparator = "|" })
	c := testClaims()
	c.Email = ""
	c.PreferredUsername = ""
	serve(m, withCookie(browserRequest("/"), sign(t, c)))
	if rec.called != 1 {
		t.Fatal("next not called")
	}
	if _, ok := rec.header["X-Auth-Email"]; ok {
		t.Fatal("empty email header set")
	}
	if got := rec.header.Get("X-Auth-User"); got != "sub-alice" {
		t.Fatalf("user header falls back to sub: got %q", got)
	}
	if got := rec.header.Get("X-Auth-Groups"); got != "dev|ops" {
		t.Fatalf("groups = %q", got)
	}
	if _, ok := rec.header["X-Auth-Name"]; ok {
		t.Fatal("unconfigured header set")
	}
}

func TestUnauthenticatedResponses(t *testing.T) {
	tests := []struct {
		name     string
		req      func() *http.Request
		redirect bool
	}{
		{"browser navigation", func() *http.Request { return browserRequest("/app?x=1") }, true},
		{"browser HEAD", func() *http.Request {
			r := browserRequest("/")
			r.Method = http.MethodHead
			return r
		}, true},
		{"XHR", func() *http.Request {
			r := browserRequest("/")
			r.Header.Set("X-Requested-With", "XMLHttpRequest")
			return r
		}, false},
		{"POST form", func() *http.Request {
			r := browserRequest("/")
			r.Method = http.MethodPost
			return r
		}, false},
		{"API client", func() *http.Request {
			r := httptest.NewRequest(http.MethodGet, "/api", nil)
			r.Header.Set("Accept", "application/json")
			return r
		}, false},
		{"no Accept", func() *http.Request { return httptest.NewRequest(http.MethodGet, "/", nil) }, false},
		{"empty cookie", func() *http.Request { return withCookie(browserRequest("/"), "") }, true},
		{"Basic auth only", func() *http.Request {
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			r.SetBasicAuth("a", "b")
			return r
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, rec, _ := newTest(t, nil)
			rw := serve(m, tt.req())
			if rec.called != 0 {
				t.Fatal("next called without a session")
			}
			if tt.redirect {
				if rw.Code != http.StatusFound {
					t.Fatalf("status %d, want 302", rw.Code)
				}
				if loc := rw.Header().Get("Location"); !strings.HasPrefix(loc, "https://auth.example.com/login?rd=") {
					t.Fatalf("Location = %q", loc)
				}
				return
			}
			if rw.Code != http.StatusUnauthorized {
				t.Fatalf("status %d, want 401", rw.Code)
			}
			if got := rw.Header().Get("WWW-Authenticate"); got != `Bearer realm="edgepass"` {
				t.Fatalf("WWW-Authenticate = %q", got)
			}
			if strings.TrimSpace(rw.Body.String()) != `{"error":"authentication required"}` || rw.Header().Get("Content-Type") != "application/json" {
				t.Fatalf("body %q type %q", rw.Body.String(), rw.Header().Get("Content-Type"))
			}
		})
	}
}

func TestRedirectURL(t *testing.T) {
	const login = "https://auth.example.com/login"
	tests := []struct {
		name, login, target string
		host                string // "" = the one the target gives (example.com for a path)
		proto, fwdHost      string // X-Forwarded-Proto and -Host; "" = not sent
		wantRd              string // "" = no rd
	}{
		{"forwarded proto and host", login, "/a/b?c=d&e=%2F", "internal:8080", "https", "app.example.com", "https://app.example.com/a/b?c=d&e=%2F"},
		{"forwarded lists take the first", login, "/", "", "https, http", "app.example.com, evil.com", "https://app.example.com/"},
		{"no forwarded headers: Host and plain http", login, "/x", "app.example.com:8443", "", "", "http://app.example.com:8443/x"},
		{"TLS without forwarded proto", login, "https://app.example.com/x", "", "", "", "https://app.example.com/x"},
		{"bogus proto falls back", login, "/x", "app.example.com", "javascript", "", "http://app.example.com/x"},
		{"forwarded host with path is ignored", login, "/x", "app.example.com", "", "evil.com/@x", "http://app.example.com/x"},
		{"no usable host", login, "/x", "bad host", "", "", ""},
		{"login URL with a query", login + "?tenant=t", "/x", "app.example.com", "", "", "http://app.example.com/x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, _, _ := newTest(t, func(c *Config) { c.LoginURL = tt.login })
			r := browserRequest(tt.target)
			if tt.host != "" {
				r.Host = tt.host
			}
			if tt.proto != "" {
				r.Header.Set("X-Forwarded-Proto", tt.proto)
			}
			if tt.fwdHost != "" {
				r.Header.Set("X-Forwarded-Host", tt.fwdHost)
			}
			rw := serve(m, r)
			loc, err := url.Parse(rw.Header().Get("Location"))
			if err != nil || rw.Code != http.StatusFound {
				t.Fatalf("status %d Location %q: %v", rw.Code, rw.Header().Get("Location"), err)
			}
			if loc.Host != "auth.example.com" || loc.Path != "/login" {
				t.Fatalf("redirect leaves the login URL: %s", loc)
			}
			if got := loc.Query().Get("rd"); got != tt.wantRd {
				t.Fatalf("rd = %q, want %q", got, tt.wantRd)
			}
			if strings.Contains(tt.login, "tenant") && loc.Query().Get("tenant") != "t" {
				t.Fatalf("login query lost: %s", loc)
			}
		})
	}
}

func FuzzRedirectURL(f *testing.F) {
	f.Add("https", "app.example.com", "internal", "/a?b=c")
	f.Add("http", "", "app.example.com:80", "/")
	f.Add("javascript", "evil.com/@x", "a@b", "//evil.com/x")
	f.Add("https", "[::1]:443", "x", "http://evil.com/abs")
	f.Add("", "app.example.com\r\nSet-Cookie: x", "", "*")
	f.Add("HTTPS", "a.b", "c.d", "/%0d%0aSet-Cookie:x")
	m, _, _ := newTest(f, func(c *Config) { c.LoginURL = "https://auth.example.com/login?t=1" })
	f.Fuzz(func(t *testing.T, proto, fwdHost, host, uri string) {
		r := &http.Request{Method: http.MethodGet, Header: http.Header{}, Host: host, RequestURI: uri, URL: &url.URL{Path: "/"}}
		if u, err := url.ParseRequestURI(uri); err == nil {
			r.URL = u
		}
		r.Header["X-Forwarded-Proto"] = []string{proto}
		r.Header["X-Forwarded-Host"] = []string{fwdHost}
		loc := m.loginRedirect(r)
		u, err := url.Parse(loc)
		if err != nil {
			t.Fatalf("unparseable redirect %q: %v", loc, err)
		}
		if u.Scheme != "https" || u.Host != "auth.example.com" || u.Path != "/login" || u.User != nil {
			t.Fatalf("redirect %q leaves the login URL", loc)
		}
		q := u.Query()
		if q.Get("t") != "1" || len(q["rd"]) > 1 {
			t.Fatalf("query tampered: %q", loc)
		}
		if strings.ContainsAny(loc, "\r\n") {
			t.Fatalf("line break in Location %q", loc)
		}
		if rd := q.Get("rd"); rd != "" {
			ru, err := url.Parse(rd)
			if err != nil || (ru.Scheme != "http" && ru.Scheme != "https") || ru.User != nil {
				t.Fatalf("rd %q is not a plain http(s) URL", rd)
			}
			if ru.Host != firstValue([]string{fwdHost}) && ru.Host != host {
				t.Fatalf("rd host %q is neither the forwarded host nor Host", ru.Host)
			}
		}
	})
}

// Attack: a client sends identity headers itself, in the casings and underscore
// spellings that CGI/PHP/WSGI backends fold together, hoping one survives.
func TestStripsSpoofedIdentityHeaders(t *testing.T) {
	spoofed := []string{
		"X-Auth-User", "x-auth-user", "X_AUTH_USER", "x_Auth-user", "X-AUTH-EMAIL", "X-Auth-Groups",
		"X-Auth-Name", "x-auth_subject", "X-Forwarded-User", "X_Forwarded_Email", "X-Forwarded-Groups",
		"X-Forwarded-Preferred-Username", "Remote-User", "REMOTE_USER", "remote-groups", "Remote-Email",
		"Remote-Name", "X-Remote-User", "X-Auth-Request-User", "x_auth_request_email", "X-Authentik-Username",
		"X_AUTHENTIK_GROUPS", "X-Edgepass-Anything", "X-Custom-Identity", "x_custom_identity", "X-Tenant-Id",
	}
	raw := sign(t, testClaims())
	for _, withSession := range []bool{true, false} {
		m, rec, _ := newTest(t, func(c *Config) {
			c.StripHeaders = []string{"X-Custom-Identity", "X-Tenant-*"}
			c.PublicPaths = []string{"/public"}
		})
		target := "/public"
		if withSession {
			target = "/app"
		}
		for round := 0; round < 2; round++ { // second round hits the memo and the cache
			r := browserRequest(target)
			if withSession {
				withCookie(r, raw)
			}
			for _, h := range spoofed {
				r.Header[h] = []string{"admin"} // raw keys, exactly as a server could store them
			}
			r.Header["X-Unrelated"] = []string{"keep"}
			rw := serve(m, r)
			if rw.Code != http.StatusTeapot {
				t.Fatalf("status %d", rw.Code)
			}
			for k, v := range rec.header {
				for _, s := range v {
					if s == "admin" {
						t.Fatalf("session=%v round %d: spoofed header %q reached the backend", withSession, round, k)
					}
				}
			}
			if rec.header.Get("X-Unrelated") != "keep" {
				t.Fatal("unrelated header stripped")
			}
			if withSession && rec.header.Get("X-Auth-User") != "alice" {
				t.Fatalf("verified header missing: %v", rec.header)
			}
		}
	}
}

// Attack: the same identity-header spellings, sent with a cookie line that is
// already in the line index, so that ServeHTTP's fast path is what sees them.
func TestFastPathStripsSpoofedHeadersOnIndexedLine(t *testing.T) {
	spoofed := []string{
		"X-Auth-User", "X_auth_user", "X-Auth_user", "X_AUTH_USER", "X-Auth-Name", "X-Auth-Subject",
		"X-Auth-Request-Email", "X_authentik_groups", "X-Edgepass-Role", "X-Custom-Identity", "X-Tenant-Id",
	}
	c := testClaims()
	c.Name = "" // X-Auth-Name is not set for this token: a spoofed one must be deleted, not kept
	raw := sign(t, c)
	m, rec, _ := newTest(t, func(c *Config) { c.StripHeaders = []string{"X-Custom-Identity", "X-Tenant-*"} })
	for _, h := range spoofed {
		for i := 0; i < 2; i++ { // index the line, then hit it
			if serve(m, withCookie(browserRequest("/"), raw)).Code != http.StatusTeapot {
				t.Fatal("valid token refused")
			}
		}
		if m.lines.len() != 1 {
			t.Fatal("the line is not indexed: the fast path is not under test")
		}
		r := withCookie(browserRequest("/"), raw)
		r.Header[h] = []string{"admin"}
		if serve(m, r).Code != http.StatusTeapot {
			t.Fatalf("%s: status refused", h)
		}
		for k, v := range rec.header {
			if len(v) > 0 && v[0] == "admin" {
				t.Fatalf("spoofed %q reached the backend as %q", h, k)
			}
		}
		if rec.header.Get("X-Auth-User") != "alice" {
			t.Fatalf("%s: verified header missing: %v", h, rec.header)
		}
	}
}

// A harmless header name the memo has not seen sends one request down the slow
// path; the line is indexed again with the name, so the next one is fast.
func TestNewHarmlessHeaderIsLearnedForTheLine(t *testing.T) {
	m, rec, _ := newTest(t, nil)
	raw := sign(t, testClaims())
	serve(m, withCookie(browserRequest("/"), raw))
	r := withCookie(browserRequest("/"), raw)
	line := r.Header["Cookie"][0]
	r.Header["X-Trace-Id"] = []string{"abc"}
	serve(m, r)
	if rec.header.Get("X-Trace-Id") != "abc" {
		t.Fatal("harmless header stripped")
	}
	v, _ := m.fast.Load(line)
	if e, ok := v.(*decision); !ok || !e.keep["X-Trace-Id"] {
		t.Fatal("the indexed line does not carry the learned header name")
	}
}

func TestStripMemoIsBounded(t *testing.T) {
	m, _, _ := newTest(t, nil)
	for i := 0; i < 3*maxStripMemo; i++ {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.Header["X-Random-"+strconv.Itoa(i)] = []string{"v"}
		r.Header["X_Auth_User"] = []string{"admin"}
		serve(m, r)
	}
	if n := len(m.strip.keepMemo.Load().(map[string]bool)); n > maxStripMemo {
		t.Fatalf("memo grew to %d", n)
	}
	if m.strip.keep("X_AUTH_USER") || !m.strip.keep("X-Random-999999") {
		t.Fatal("decision wrong once the memo is full")
	}
}

func refused(t *testing.T, m *Middleware, rec *recorder, raw string) {
	t.Helper()
	before := rec.called
	r := httptest.NewRequest(http.MethodGet, "/api", nil)
	r.Header.Set("Cookie", "edgepass_session="+raw)
	rw := serve(m, r)
	if rw.Code != http.StatusUnauthorized || rec.called != before {
		t.Fatalf("token accepted: status %d", rw.Code)
	}
	if raw != "" && len(raw) > 10 && strings.Contains(rw.Body.String(), raw[:10]) {
		t.Fatal("response echoes the token")
	}
}

// Attack: replay a token after it expired — including one that is already cached.
func TestRejectsExpiredToken(t *testing.T) {
	m, rec, clk := newTest(t, nil)
	c := testClaims()
	c.Expiry = testNow.Unix() - 31
	refused(t, m, rec, sign(t, c))

	c = testClaims()
	c.Expiry = testNow.Unix() + 60
	raw := sign(t, c)
	for i := 0; i < 2; i++ { // first seen, then cached
		if serve(m, withCookie(httptest.NewRequest(http.MethodGet, "/", nil), raw)).Code != http.StatusTeapot {
			t.Fatal("fresh token refused")
		}
	}
	clk.set(testNow.Add(60*time.Second + 30*time.Second)) // exp + skew
	before := rec.called
	for i := 0; i < 2; i++ {
		if serve(m, withCookie(httptest.NewRequest(http.MethodGet, "/", nil), raw)).Code != http.StatusUnauthorized || rec.called != before {
			t.Fatal("expired cached token served")
		}
	}
	if m.cache.len() != 0 || m.lines.len() != 0 {
		t.Fatalf("expired entries kept: %d tokens, %d lines", m.cache.len(), m.lines.len())
	}
}

// Attack: a token the daemon minted for another audience or issuer.
func TestRejectsWrongAudienceOrIssuer(t *testing.T) {
	m, rec, _ := newTest(t, nil)
	c := testClaims()
	c.Audience = token.Audience{"grafana"}
	refused(t, m, rec, sign(t, c))
	c = testClaims()
	c.Issuer = "https://other.example.com"
	refused(t, m, rec, sign(t, c))
}

// Attack: edit the payload (add a group) of a valid token.
func TestRejectsTamperedToken(t *testing.T) {
	m, rec, _ := newTest(t, func(c *Config) { c.AllowedGroups = []string{"admins"} })
	good := strings.Split(sign(t, testClaims()), ".")
	c := testClaims()
	c.Groups = []string{"admins"}
	evil := strings.Split(sign(t, c), ".")
	refused(t, m, rec, good[0]+"."+evil[1]+"."+good[2])
}

// Attack: a token signed with the attacker's own key under an unknown kid, or
// under the known kid.
func TestRejectsForeignKeys(t *testing.T) {
	m, rec, _ := newTest(t, nil)
	attacker := ed25519.NewKeyFromSeed(make([]byte, 32))
	for _, kid := range []string{"attacker", "test"} {
		raw, err := token.Sign(testClaims(), kid, attacker)
		if err != nil {
			t.Fatal(err)
		}
		refused(t, m, rec, raw)
	}
}

// Attack: alg "none" with no signature.
func TestRejectsAlgNone(t *testing.T) {
	m, rec, _ := newTest(t, nil)
	parts := strings.Split(sign(t, testClaims()), ".")
	hdr := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT","kid":"test"}`))
	refused(t, m, rec, hdr+"."+parts[1]+".")
	refused(t, m, rec, hdr+"."+parts[1]+"."+parts[2])
}

// Attack: a cookie far larger than any real token, to burn CPU in decoding.
func TestRejectsOversizedCookie(t *testing.T) {
	m, rec, _ := newTest(t, nil)
	refused(t, m, rec, strings.Repeat("A", token.MaxTokenSize+1))
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.Header.Set("Authorization", "Bearer "+strings.Repeat("x.", 10000))
	if serve(m, r).Code != http.StatusUnauthorized || rec.called != 0 {
		t.Fatal("oversized bearer accepted")
	}
}

// Attack: a correctly signed token without a session id cannot be revoked at the
// edge, so it is refused.
func TestRejectsTokenWithoutSessionID(t *testing.T) {
	m, rec, _ := newTest(t, nil)
	c := testClaims()
	c.SessionID = ""
	refused(t, m, rec, sign(t, c))
}

// Attack: flood the edge with distinct forged tokens; memory must not grow.
func TestForgedTokensDoNotGrowMemory(t *testing.T) {
	m, rec, _ := newTest(t, nil)
	parts := strings.Split(sign(t, testClaims()), ".")
	for i := 0; i < 2000; i++ {
		sig := make([]byte, 64)
		copy(sig, strconv.Itoa(i))
		refused(t, m, rec, parts[0]+"."+parts[1]+"."+base64.RawURLEncoding.EncodeToString(sig))
	}
	if m.cache.len() != 0 || m.lines.len() != 0 {
		t.Fatalf("forged tokens cached: %d tokens, %d lines", m.cache.len(), m.lines.len())
	}
}

func TestCacheIsBounded(t *testing.T) {
	m, rec, _ := newTest(t, func(c *Config) { c.CacheSize = 50 })
	for i := 0; i < 500; i++ {
		c := testClaims()
		c.SessionID = "session-" + strconv.Itoa(i) + "-xxxxxxxxxxxxxx"
		r := withCookie(httptest.NewRequest(http.MethodGet, "/", nil), sign(t, c))
		if serve(m, r).Code != http.StatusTeapot {
			t.Fatal("valid token refused")
		}
		if n, l := m.cache.len(), m.lines.len(); n > 50 || l > 50 {
			t.Fatalf("cache grew to %d tokens, %d lines", n, l)
		}
	}
	if rec.called != 500 {
		t.Fatalf("next called %d times", rec.called)
	}
}

func withState(tb testing.TB, edit func(*Config)) (*Middleware, *recorder, *clock, *edgestate.State) {
	m, rec, clk := newTest(tb, edit)
	anchors, err := token.ParseAnchors([]string{testAnchorText})
	if err != nil {
		tb.Fatal(err)
	}
	m.attach(edgestate.NewWithAnchors(anchors))
	m.state.Touch(testNow)
	return m, rec, clk, m.state
}

func apply(t *testing.T, st *edgestate.State, key, op, value string) {
	t.Helper()
	if err := st.Apply(key, op, []byte(value), 1, testNow); err != nil {
		t.Fatal(err)
	}
}

// factIat orders the signed facts a test applies.
var factIat int64

// applyGroups applies a groups fact signed by the test anchor.
func applyGroups(t *testing.T, st *edgestate.State, sub string, groups []string, at int64) {
	t.Helper()
	factIat++
	v, err := edgestate.SignGroups(token.SubjectKey(sub), edgestate.GroupsFact{Iat: factIat, Groups: groups, At: at}, testAnchor)
	if err != nil {
		t.Fatal(err)
	}
	apply(t, st, "groups."+token.SubjectKey(sub), "", string(v))
}

// applyKeys applies a keys fact signed by the test anchor.
func applyKeys(t *testing.T, st *edgestate.State, ks *token.KeySet, maxLifetime int64, revoked ...string) {
	t.Helper()
	jwks, err := ks.MarshalJWKS()
	if err != nil {
		t.Fatal(err)
	}
	factIat++
	v, err := edgestate.SignKeys(edgestate.KeysFact{Iat: factIat, JWKS: jwks, Revoked: revoked, MaxTokenLifetime: maxLifetime}, testAnchor)
	if err != nil {
		t.Fatal(err)
	}
	apply(t, st, "keys", "", string(v))
}

// Attack: keep using a cookie after logout — the revocation arrives over NATS
// after the token is already cached.
func TestRejectsRevokedSession(t *testing.T) {
	m, rec, _, st := withState(t, nil)
	c := testClaims()
	raw := sign(t, c)
	r := withCookie(browserRequest("/"), raw)
	if serve(m, r).Code != http.StatusTeapot {
		t.Fatal("valid token refused")
	}
	apply(t, st, "revoke.session."+c.SessionID, "", `{"exp":`+strconv.FormatInt(c.Expiry, 10)+`}`)
	rw := serve(m, withCookie(browserRequest("/"), raw))
	if rw.Code != http.StatusFound || rec.called != 1 {
		t.Fatalf("revoked session served: %d", rw.Code)
	}
	// Another session of the same user is unaffected.
	c2 := testClaims()
	c2.SessionID = "another-session-0000000000"
	if serve(m, withCookie(browserRequest("/"), sign(t, c2))).Code != http.StatusTeapot {
		t.Fatal("other session refused")
	}
	// Attack: a writer of the edge bucket deletes the revocation.
	if err := st.Apply("revoke.session."+c.SessionID, "DEL", nil, 2, testNow); err == nil {
		t.Fatal("a revocation delete was applied")
	}
	if serve(m, withCookie(browserRequest("/"), raw)).Code == http.StatusTeapot {
		t.Fatal("revoked session served after a delete of its revocation")
	}
}

// Attack: a disabled user keeps old sessions; new logins (iat after before) work.
func TestRejectsRevokedUser(t *testing.T) {
	m, rec, _, st := withState(t, nil)
	old := testClaims()
	raw := sign(t, old)
	serve(m, withCookie(browserRequest("/"), raw))
	apply(t, st, "revoke.user."+token.SubjectKey(old.Subject), "", `{"before":`+strconv.FormatInt(old.IssuedAt, 10)+`}`)
	refused(t, m, rec, raw)
	fresh := testClaims()
	fresh.IssuedAt = old.IssuedAt + 1
	fresh.SessionID = "fresh-session-00000000000"
	if serve(m, withCookie(browserRequest("/"), sign(t, fresh))).Code != http.StatusTeapot {
		t.Fatal("login after the revocation refused")
	}
}

// Group changes pushed over NATS take effect on cached tokens: removing a group
// revokes access, adding one grants it, and the groups header follows.
func TestGroupOverrideFromState(t *testing.T) {
	m, rec, _, st := withState(t, func(c *Config) { c.AllowedGroups = []string{"ops"} })
	c := testClaims()
	raw := sign(t, c)
	if serve(m, withCookie(browserRequest("/"), raw)).Code != http.StatusTeapot {
		t.Fatal("ops member refused")
	}
	applyGroups(t, st, c.Subject, []string{"dev"}, c.IssuedAt)
	rw := serve(m, withCookie(browserRequest("/"), raw))
	if rw.Code != http.StatusForbidden || strings.TrimSpace(rw.Body.String()) != `{"error":"forbidden"}` {
		t.Fatalf("removed from ops but got %d %s", rw.Code, rw.Body.String())
	}
	applyGroups(t, st, c.Subject, []string{"ops", "x"}, c.IssuedAt)
	if serve(m, withCookie(browserRequest("/"), raw)).Code != http.StatusTeapot || rec.header.Get("X-Auth-Groups") != "ops,x" {
		t.Fatalf("override not applied: %v", rec.header)
	}
	// An override older than the token does not apply.
	applyGroups(t, st, c.Subject, []string{"dev"}, c.IssuedAt-1)
	if serve(m, withCookie(browserRequest("/"), raw)).Code != http.StatusTeapot || rec.header.Get("X-Auth-Groups") != "dev,ops" {
		t.Fatalf("stale override applied: %v", rec.header)
	}
}

// Key rotation over NATS: keys from the state replace the inline JWKS, and a
// removed key stops cached tokens signed with it.
func TestKeysFromState(t *testing.T) {
	m, rec, _, st := withState(t, nil)
	raw := sign(t, testClaims())
	if serve(m, withCookie(browserRequest("/"), raw)).Code != http.StatusTeapot {
		t.Fatal("inline key refused")
	}
	other := ed25519.NewKeyFromSeed(make([]byte, 32))
	applyKeys(t, st, token.NewKeySet(token.Key{ID: "k2", Public: other.Public().(ed25519.PublicKey)}), 86400)
	refused(t, m, rec, raw) // cached, but its key is gone
	raw2, _ := token.Sign(testClaims(), "k2", other)
	if serve(m, withCookie(browserRequest("/"), raw2)).Code != http.StatusTeapot {
		t.Fatal("rotated key refused")
	}
	// Attack: a writer deletes the keys fact to fall back to the inline key.
	if err := st.Apply("keys", "DEL", nil, 2, testNow); err == nil {
		t.Fatal("a keys delete was applied")
	}
	refused(t, m, rec, raw)
}

// Attack: a writer of the edge bucket (not the daemon) publishes its own
// JWKS to have tokens it minted accepted.
func TestForgedKeysFactIgnored(t *testing.T) {
	m, rec, _, st := withState(t, nil)
	evil := ed25519.NewKeyFromSeed([]byte("mallory-mallory-mallory-mallory!"))
	jwks, _ := token.NewKeySet(token.Key{ID: "evil", Public: evil.Public().(ed25519.PublicKey)}).MarshalJWKS()
	if err := st.Apply("keys", "", jwks, 1, testNow); err == nil {
		t.Fatal("an unsigned JWKS was applied")
	}
	c := testClaims()
	c.Groups = []string{"admins"}
	forged, _ := token.Sign(c, "evil", evil)
	refused(t, m, rec, forged)
}

// Attack: a token minted with a leaked (or rotated-out) key for a long
// life; the daemon publishes the longest lifetime it issues.
func TestLongLivedTokenRefused(t *testing.T) {
	m, rec, _, st := withState(t, nil)
	applyKeys(t, st, token.NewKeySet(token.Key{ID: "test", Public: testPriv.Public().(ed25519.PublicKey)}), 7200)
	c := testClaims()
	c.Expiry = c.IssuedAt + 100*24*3600
	refused(t, m, rec, sign(t, c))
	ok := testClaims()
	if serve(m, withCookie(browserRequest("/"), sign(t, ok))).Code != http.StatusTeapot {
		t.Fatal("a token within the published lifetime was refused")
	}
}

// Attack: a key revoked at the daemon keeps verifying cached tokens.
func TestRevokedKeyStopsCachedTokens(t *testing.T) {
	m, rec, _, st := withState(t, nil)
	pub := testPriv.Public().(ed25519.PublicKey)
	applyKeys(t, st, token.NewKeySet(token.Key{ID: "test", Public: pub}), 86400)
	raw := sign(t, testClaims())
	if serve(m, withCookie(browserRequest("/"), raw)).Code != http.StatusTeapot {
		t.Fatal("valid token refused")
	}
	fresh := ed25519.NewKeyFromSeed([]byte("a-fresh-signing-key-for-the-test"))
	applyKeys(t, st, token.NewKeySet(token.Key{ID: "test", Public: pub}, token.Key{ID: "k2", Public: fresh.Public().(ed25519.PublicKey)}), 86400, "test")
	refused(t, m, rec, raw)
}

func TestStaleState(t *testing.T) {
	for _, action := range []string{"serve", "refuse"} {
		t.Run(action, func(t *testing.T) {
			m, rec, clk, st := withState(t, nil)
			m.s.maxStaleSec = 60
			m.s.refuseStale = action == "refuse"
			m.s.lineIndexOff = m.s.refuseStale
			raw := sign(t, testClaims())
			// Attack window: a starting edge replaying the bucket has not seen
			// every revocation yet; strict mode waits for the first catch-up.
			code := serve(m, withCookie(browserRequest("/"), raw)).Code
			if want := map[string]int{"serve": http.StatusTeapot, "refuse": http.StatusServiceUnavailable}[action]; code != want {
				t.Fatalf("before the first sync: status %d, want %d", code, want)
			}
			st.SetSynced(true)
			if serve(m, withCookie(browserRequest("/"), raw)).Code != http.StatusTeapot {
				t.Fatal("fresh state refused")
			}
			clk.set(testNow.Add(61 * time.Second))
			rw := serve(m, withCookie(browserRequest("/"), raw))
			if action == "serve" {
				if rw.Code != http.StatusTeapot {
					t.Fatalf("serve: status %d", rw.Code)
				}
				return
			}
			if rw.Code != http.StatusServiceUnavailable || !strings.Contains(rw.Body.String(), `"reason":"stale"`) || rec.called != 1 {
				t.Fatalf("refuse: status %d body %s", rw.Code, rw.Body.String())
			}
			// Attack window: after an outage, the replay of the facts missed
			// meanwhile makes NATS "heard" long before it has caught up.
			st.SetSynced(false)
			st.Touch(clk.now())
			if serve(m, withCookie(browserRequest("/"), raw)).Code != http.StatusServiceUnavailable {
				t.Fatal("served while replaying the facts missed during an outage")
			}
			st.SetSynced(true)
			if serve(m, withCookie(browserRequest("/"), raw)).Code != http.StatusTeapot {
				t.Fatal("still refused after the edge caught up again")
			}
		})
	}
}

func TestAuthorize(t *testing.T) {
	tests := []struct {
		name    string
		edit    func(*Config)
		claims  func(*token.Claims)
		allowed bool
	}{
		{"no rules admits everyone", nil, nil, true},
		{"group match", func(c *Config) { c.AllowedGroups = []string{"ops"} }, nil, true},
		{"group miss", func(c *Config) { c.AllowedGroups = []string{"admins"} }, nil, false},
		{"group is case-sensitive", func(c *Config) { c.AllowedGroups = []string{"OPS"} }, nil, false},
		{"user by preferred_username", func(c *Config) { c.AllowedUsers = []string{"alice"} }, nil, true},
		{"user by email, any case", func(c *Config) { c.AllowedUsers = []string{"Alice@Example.com"} }, nil, true},
		{"user by sub", func(c *Config) { c.AllowedUsers = []string{"sub-alice"} }, nil, true},
		{"user miss", func(c *Config) { c.AllowedUsers = []string{"bob"} }, nil, false},
		{"domain match", func(c *Config) { c.AllowedEmailDomains = []string{"EXAMPLE.com"} }, nil, true},
		{"domain is exact, not a suffix", func(c *Config) { c.AllowedEmailDomains = []string{"ample.com"} }, nil, false},
		{"subdomain is not the domain", func(c *Config) { c.AllowedEmailDomains = []string{"example.com"} },
			func(c *token.Claims) { c.Email = "alice@evil.example.com" }, false},
		{"any rule admits", func(c *Config) { c.AllowedGroups = []string{"admins"}; c.AllowedUsers = []string{"alice"} }, nil, true},
		{"no email, domain rule", func(c *Config) { c.AllowedEmailDomains = []string{"example.com"} },
			func(c *token.Claims) { c.Email = "" }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, rec, _ := newTest(t, tt.edit)
			c := testClaims()
			if tt.claims != nil {
				tt.claims(c)
			}
			rw := serve(m, withCookie(browserRequest("/"), sign(t, c)))
			if got := rec.called == 1; got != tt.allowed {
				t.Fatalf("allowed = %v (status %d), want %v", got, rw.Code, tt.allowed)
			}
			if !tt.allowed && rw.Code != http.StatusForbidden {
				t.Fatalf("status %d, want 403", rw.Code)
			}
		})
	}
}

func TestPublicPaths(t *testing.T) {
	m, rec, _ := newTest(t, func(c *Config) { c.PublicPaths = []string{"/healthz", "/static/*"} })
	tests := []struct {
		path   string
		public bool
	}{
		{"/healthz", true}, {"/healthz/x", false}, {"/static/app.js", true}, {"/static", false}, {"/", false},
	}
	for _, tt := range tests {
		before := rec.called
		rw := serve(m, httptest.NewRequest(http.MethodGet, tt.path, nil))
		if got := rec.called > before; got != tt.public {
			t.Fatalf("%s: served=%v (status %d), want %v", tt.path, got, rw.Code, tt.public)
		}
	}
}

func TestRemoveCookie(t *testing.T) {
	raw := sign(t, testClaims())
	for _, remove := range []bool{false, true} {
		m, rec, _ := newTest(t, func(c *Config) { c.RemoveCookie = remove })
		r := browserRequest("/")
		r.Header.Add("Cookie", "a=1; edgepass_session="+raw)
		r.Header.Add("Cookie", "edgepass_session=old")
		serve(m, r)
		got := strings.Join(rec.header["Cookie"], "|")
		if remove && got != "a=1" {
			t.Fatalf("removeCookie: backend sees %q", got)
		}
		if !remove && !strings.Contains(got, raw) {
			t.Fatalf("cookie removed without removeCookie: %q", got)
		}
	}
}

// removeCookie on the fast path: the indexed line carries the Cookie line the
// backend gets, without the session cookie (and no Cookie at all when it was
// the only one).
func TestRemoveCookieOnIndexedLine(t *testing.T) {
	raw := sign(t, testClaims())
	m, rec, _ := newTest(t, func(c *Config) { c.RemoveCookie = true })
	for _, tt := range []struct{ line, want string }{
		{"a=1; edgepass_session=" + raw + "; b=2", "a=1; b=2"},
		{"edgepass_session=" + raw, ""},
	} {
		for i := 0; i < 3; i++ { // slow path, then the line index
			r := browserRequest("/")
			r.Header.Set("Cookie", tt.line)
			if code := serve(m, r).Code; code != http.StatusTeapot {
				t.Fatalf("status %d", code)
			}
			if got := strings.Join(rec.header["Cookie"], "|"); got != tt.want || strings.Contains(got, raw) {
				t.Fatalf("request %d: backend sees Cookie %q, want %q", i, got, tt.want)
			}
		}
		v, _ := m.fast.Load(tt.line)
		if v == nil {
			t.Fatal("with removeCookie the line is not indexed: the fast path is not under test")
		}
		// A new harmless header re-indexes the line; the Cookie line is still
		// set once.
		r := browserRequest("/")
		r.Header.Set("Cookie", tt.line)
		r.Header.Set("X-Trace-Id", "1")
		serve(m, r)
		v, _ = m.fast.Load(tt.line)
		if n := strings.Count(strings.Join(v.(*decision).hdrNames, ","), "Cookie"); n != 1 || !v.(*decision).keep["X-Trace-Id"] {
			t.Fatalf("re-indexed line sets Cookie %d times (want 1), keep has X-Trace-Id: %v", n, v.(*decision).keep["X-Trace-Id"])
		}
	}
}

func TestHeaderValuesAreSanitized(t *testing.T) {
	m, rec, _ := newTest(t, nil)
	c := testClaims()
	c.Name = "Mallory\r\nX-Admin: yes"
	serve(m, withCookie(browserRequest("/"), sign(t, c)))
	if got := rec.header.Get("X-Auth-Name"); got != "Mallory  X-Admin: yes" {
		t.Fatalf("name header = %q", got)
	}
}

func TestNewKeepsGoroutinesFlat(t *testing.T) {
	count := func() int {
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
		return runtime.NumGoroutine()
	}
	t.Run("inline jwks", func(t *testing.T) {
		before := count()
		for i := 0; i < 10000; i++ {
			if _, err := New(context.Background(), http.NotFoundHandler(), testConfig(), "m"+strconv.Itoa(i)); err != nil {
				t.Fatal(err)
			}
		}
		if after := count(); after > before {
			t.Fatalf("goroutines %d -> %d after 10000 New", before, after)
		}
	})
	t.Run("nats", func(t *testing.T) {
		cfg := func() *Config {
			c := testConfig()
			withNATS(c)
			c.NATS.ReplicaID = "goroutine-test"
			return c
		}
		if _, err := New(context.Background(), http.NotFoundHandler(), cfg(), "warm"); err != nil {
			t.Fatal(err)
		}
		w, err := natsedge.Shared(natsedge.Config{URLs: []string{"nats://127.0.0.1:1"}, Bucket: "edgepass_edge", ReplicaID: "goroutine-test", Version: Version, TrustAnchors: []string{testAnchorText}})
		if err != nil {
			t.Fatal(err)
		}
		defer w.Close()
		before := count()
		for i := 0; i < 10000; i++ {
			h, err := New(context.Background(), http.NotFoundHandler(), cfg(), "m"+strconv.Itoa(i))
			if err != nil {
				t.Fatal(err)
			}
			if h.(*Middleware).state != w.State() {
				t.Fatal("middleware does not share the process-wide state")
			}
		}
		if after := count(); after > before+1 { // +1: the watcher may be mid-reconnect
			t.Fatalf("goroutines %d -> %d after 10000 New", before, after)
		}
	})
}

// The daemon names a host-only Secure session cookie "__Host-"+cookieName;
// the edge reads it and hides it from the backend like the plain name.
func TestHostPrefixedSessionCookie(t *testing.T) {
	m, rec, _ := newTest(t, nil)
	raw := sign(t, testClaims())
	for i := 0; i < 2; i++ {
		r := browserRequest("/")
		r.Header.Set("Cookie", "a=1; __Host-edgepass_session="+raw)
		if code := serve(m, r).Code; code != http.StatusTeapot {
			t.Fatalf("request %d: status %d", i, code)
		}
		if c := rec.header.Get("Cookie"); c != "a=1" {
			t.Fatalf("request %d: backend Cookie %q", i, c)
		}
	}
}

func TestWithoutCookie(t *testing.T) {
	tests := []struct{ in, want string }{
		{"edgepass_session=x", ""},
		{"a=1; edgepass_session=x; b=2", "a=1; b=2"},
		{"a=1;edgepass_session=x;edgepass_session=y", "a=1"},
		{"xedgepass_session=1; a=2", "xedgepass_session=1; a=2"},
		{"__Host-edgepass_session=x; a=2; edgepass_session=y", "a=2"},
	}
	for _, tt := range tests {
		if got := withoutCookie(tt.in, "edgepass_session", "__Host-edgepass_session"); got != tt.want {
			t.Errorf("withoutCookie(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// Attack: the fast path is keyed by the whole Cookie header line; a line that
// differs only in the session cookie must never reuse another token's decision.
func TestLineIndexNeverCrossesTokens(t *testing.T) {
	m, rec, _ := newTest(t, func(c *Config) { c.AllowedUsers = []string{"alice"} })
	alice := sign(t, testClaims())
	bob := testClaims()
	bob.PreferredUsername, bob.Subject, bob.Email = "bob", "sub-bob", "bob@example.com"
	bob.SessionID = "c2Vzc2lvbi1ib2ItMDAwMDAx"
	bobRaw := sign(t, bob)
	req := func(line string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(http.MethodGet, "/api", nil)
		r.Header.Set("Cookie", line)
		return serve(m, r)
	}
	for i := 0; i < 3; i++ {
		if code := req("a=1; edgepass_session=" + alice).Code; code != http.StatusTeapot {
			t.Fatalf("alice refused: %d", code)
		}
	}
	if code := req("a=1; edgepass_session=" + bobRaw).Code; code != http.StatusForbidden {
		t.Fatalf("bob's line got %d, want 403 (bob is not allowed)", code)
	}
	if code := req("a=1; edgepass_session=" + alice[:len(alice)-2] + "AA").Code; code != http.StatusUnauthorized {
		t.Fatalf("tampered token on a known line got %d", code)
	}
	if code := req("a=2; edgepass_session=" + alice).Code; code != http.StatusTeapot || rec.header.Get("X-Auth-User") != "alice" {
		t.Fatalf("alice with other cookies: %d %v", code, rec.header)
	}
	// A huge Cookie line is served but not used as a key.
	big := "pad=" + strings.Repeat("x", maxLineKey) + "; edgepass_session=" + alice
	n := m.lines.len()
	if code := req(big).Code; code != http.StatusTeapot || m.lines.len() != n {
		t.Fatalf("huge line: status %d, line index %d -> %d", code, n, m.lines.len())
	}
}

// A session cookie wins over an Authorization header, which may carry the
// backend's own credentials; the backend still receives that header.
func TestCookieWinsOverAuthorization(t *testing.T) {
	m, rec, _ := newTest(t, nil)
	raw := sign(t, testClaims())
	for i := 0; i < 2; i++ {
		r := withCookie(browserRequest("/"), raw)
		r.Header.Set("Authorization", "Bearer grafana-api-key")
		if code := serve(m, r).Code; code != http.StatusTeapot {
			t.Fatalf("status %d", code)
		}
		if rec.header.Get("Authorization") != "Bearer grafana-api-key" || rec.header.Get("X-Auth-User") != "alice" {
			t.Fatalf("backend saw %v", rec.header)
		}
	}
	// Without an edgepass cookie the bearer token is used, also with other cookies.
	for i := 0; i < 2; i++ {
		r := httptest.NewRequest(http.MethodGet, "/api", nil)
		r.Header.Set("Cookie", "theme=dark")
		r.Header.Set("Authorization", "Bearer "+raw)
		if code := serve(m, r).Code; code != http.StatusTeapot {
			t.Fatalf("bearer with unrelated cookies: %d", code)
		}
	}
}

// Attack: walk out of a public prefix ("/static/../admin", "/static/..;/admin"
// for Tomcat, encoded dots) so the backend serves a protected page unauthenticated.
func TestPublicPathsRefuseTraversalOutOfPrefix(t *testing.T) {
	m, rec, _ := newTest(t, func(c *Config) { c.PublicPaths = []string{"/healthz", "/static/*"} })
	for _, path := range []string{
		"/static/../admin", "/static/..", "/static/./x/../../admin", "/static/..;/admin",
		"/static/x;/../admin", "/static/%2e%2e/admin", "/static/%252e%252e/admin", `/static/..\admin`,
		"/healthz;x",
	} {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.URL.Path = path
		if u, err := url.Parse(path); err == nil {
			r.URL = u
		}
		before := rec.called
		rw := serve(m, r)
		if rec.called != before || rw.Code != http.StatusUnauthorized {
			t.Fatalf("%q (decoded %q): served without a session (status %d)", path, r.URL.Path, rw.Code)
		}
	}
	for _, path := range []string{"/static/app.js", "/static/.well-known/x", "/static/a..b/c", "/static/.hidden"} {
		before := rec.called
		serve(m, httptest.NewRequest(http.MethodGet, path, nil))
		if rec.called != before+1 {
			t.Fatalf("%q: public path refused", path)
		}
	}
}

// Attack: a group the user may name at the IdP ("staff,admins") is split by the
// backend on the separator and read as membership of "admins".
func TestGroupsHeaderRefusesSeparatorInGroupName(t *testing.T) {
	m, rec, _ := newTest(t, nil)
	c := testClaims()
	c.Groups = []string{"dev", "staff,admins", "", "ops"}
	if serve(m, withCookie(browserRequest("/"), sign(t, c))).Code != http.StatusTeapot {
		t.Fatal("request refused")
	}
	if got := rec.header.Get("X-Auth-Groups"); got != "dev,ops" {
		t.Fatalf("groups header = %q, want %q", got, "dev,ops")
	}
}
