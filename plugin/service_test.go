package edgepass

import (
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/edgepass/edgepass/plugin/token"
)

func serviceClaims(scope ...string) *token.Claims {
	return &token.Claims{
		Issuer: "https://auth.example.com", Audience: token.Audience{token.ServiceAudience},
		Subject: token.ServiceSubjectPrefix + "billing-sync", SessionID: "c2VydmljZS10b2tlbi0wMDAwMDE",
		IssuedAt: testNow.Unix() - 60, Expiry: testNow.Unix() + 3600, PreferredUsername: "billing-sync",
		Groups: []string{"billing"}, ServiceAudiences: scope,
	}
}

func apiRequest(authorization string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "/api/items", nil)
	r.Header.Set("Accept", "application/json")
	if authorization != "" {
		r.Header.Set("Authorization", authorization)
	}
	return r
}

func challengeOf(rw *httptest.ResponseRecorder) string { return rw.Header().Get("WWW-Authenticate") }

func withServiceTokens(auds ...string) func(*Config) {
	return func(c *Config) {
		c.ServiceTokens.Enabled = true
		c.ServiceTokens.Audiences = auds
	}
}

// Attack: use a service token on a route that never opted in (its audience
// is not the session audience, so it is refused everywhere by default).
func TestServiceTokenRefusedWhereNotEnabled(t *testing.T) {
	m, rec, _ := newTest(t, nil)
	rw := serve(m, apiRequest("Bearer "+sign(t, serviceClaims("billing"))))
	if rw.Code != http.StatusUnauthorized || rec.called != 0 || !strings.Contains(challengeOf(rw), `error_description="wrong_audience"`) {
		t.Fatalf("%d %q", rw.Code, challengeOf(rw))
	}
}

func TestServiceTokenAcceptedInScopeOnly(t *testing.T) {
	m, rec, _ := newTest(t, withServiceTokens("billing", "billing-v2"))
	raw := sign(t, serviceClaims("reports", "billing"))
	for i := 0; i < 3; i++ { // first sight, then the fast path
		if rw := serve(m, apiRequest("Bearer "+raw)); rw.Code != http.StatusTeapot {
			t.Fatalf("in scope: %d %q", rw.Code, challengeOf(rw))
		}
	}
	if rec.header.Get("X-Auth-User") != "billing-sync" || rec.header.Get("X-Auth-Subject") != "service:billing-sync" || rec.header.Get("X-Auth-Groups") != "billing" {
		t.Fatalf("identity %v", rec.header)
	}
	if rec.header.Get("Authorization") != "" {
		t.Fatal("the backend got the service token")
	}
	// Attack: a token scoped to other routes.
	other := sign(t, serviceClaims("reports"))
	rw := serve(m, apiRequest("Bearer "+other))
	if rw.Code != http.StatusUnauthorized || !strings.Contains(challengeOf(rw), `error_description="wrong_audience"`) {
		t.Fatalf("out of scope: %d %q", rw.Code, challengeOf(rw))
	}
	// Sessions still work on the same middleware.
	if rw := serve(m, withCookie(browserRequest("/"), sign(t, testClaims()))); rw.Code != http.StatusTeapot {
		t.Fatalf("session on a service-token route: %d", rw.Code)
	}
	if rw := serve(m, apiRequest("Bearer "+sign(t, testClaims()))); rw.Code != http.StatusTeapot {
		t.Fatalf("session bearer on a service-token route: %d", rw.Code)
	}
	// Any other audience is still wrong.
	c := testClaims()
	c.Audience = token.Audience{"someone-else"}
	if rw := serve(m, apiRequest("Bearer "+sign(t, c))); rw.Code != http.StatusUnauthorized || !strings.Contains(challengeOf(rw), "wrong_audience") {
		t.Fatalf("foreign audience: %d %q", rw.Code, challengeOf(rw))
	}
	// An expired one says so.
	exp := serviceClaims("billing")
	exp.Expiry = testNow.Unix() - 120
	if rw := serve(m, apiRequest("Bearer "+sign(t, exp))); rw.Code != http.StatusUnauthorized || !strings.Contains(challengeOf(rw), `error_description="expired"`) {
		t.Fatalf("expired: %d %q", rw.Code, challengeOf(rw))
	}
}

// Attack: plant a service token as a session cookie (a browser would then
// carry a machine's credential on every route that accepts sessions).
func TestServiceTokenNeverAcceptedAsCookie(t *testing.T) {
	m, rec, _ := newTest(t, withServiceTokens("billing"))
	raw := sign(t, serviceClaims("billing"))
	// Seen as a bearer token first, so its decision is cached.
	if serve(m, apiRequest("Bearer "+raw)).Code != http.StatusTeapot {
		t.Fatal("bearer refused")
	}
	before := rec.called
	for i := 0; i < 3; i++ {
		r := apiRequest("")
		r.Header.Set("Cookie", "edgepass_session="+raw)
		if rw := serve(m, r); rw.Code != http.StatusUnauthorized || rec.called != before {
			t.Fatalf("as a cookie: %d", rw.Code)
		}
	}
	if m.lines.len() != 1 {
		t.Fatalf("the cookie line was indexed (%d lines)", m.lines.len())
	}
}

// A revoked service token is refused at once, cached or not.
func TestRevokedServiceTokenRefused(t *testing.T) {
	m, rec, _, st := withState(t, withServiceTokens("billing"))
	c := serviceClaims("billing")
	raw := sign(t, c)
	if serve(m, apiRequest("Bearer "+raw)).Code != http.StatusTeapot || serve(m, apiRequest("Bearer "+raw)).Code != http.StatusTeapot {
		t.Fatal("refused before revocation")
	}
	apply(t, st, "revoke.session."+c.SessionID, "", `{"exp":`+strconv.FormatInt(c.Expiry, 10)+`}`)
	before := rec.called
	rw := serve(m, apiRequest("Bearer "+raw))
	if rw.Code != http.StatusUnauthorized || rec.called != before || !strings.Contains(challengeOf(rw), "session_revoked") {
		t.Fatalf("revoked: %d %q", rw.Code, challengeOf(rw))
	}
}

func TestServiceTokenGroupsAuthorize(t *testing.T) {
	m, _, _ := newTest(t, func(c *Config) {
		withServiceTokens("billing")(c)
		c.AllowedGroups = []string{"admins"}
	})
	if rw := serve(m, apiRequest("Bearer "+sign(t, serviceClaims("billing")))); rw.Code != http.StatusForbidden {
		t.Fatalf("token without the route's group: %d", rw.Code)
	}
}

func TestServiceTokenSettings(t *testing.T) {
	checkRefused(t, []refusedSetting{
		{"audiences without enabled", func(c *Config) { c.ServiceTokens.Audiences = []string{"x"} }, "serviceTokens.enabled"},
		{"enabled without audiences", func(c *Config) { c.ServiceTokens.Enabled = true }, "serviceTokens.audiences"},
		{"service audience", withServiceTokens(token.ServiceAudience), "cannot name a route"},
		{"session audience", withServiceTokens("edgepass"), "cannot name a route"},
		{"misspelled", func(c *Config) {
			c.ServiceTokens.UnknownSettings = map[string]interface{}{"audience": "x"}
		}, `did you mean "serviceTokens.audiences"`},
	})
}
