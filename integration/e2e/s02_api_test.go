package e2e

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/edgepass/edgepass/integration/harness"
)

// Scenario 2: API clients (XHR, fetch, curl) get 401 with a JSON body instead
// of a login redirect, and a session token works as a bearer token.
func TestAPIClientsGet401AndBearerTokenWorks(t *testing.T) {
	s := shared(t)
	alice := signIn(t, s, harness.AliceUser, harness.AlicePassword)
	path := harness.PathApp + "/api/items"

	cases := []struct {
		name   string
		method string
		header http.Header
	}{
		{"json", "GET", http.Header{"Accept": {"application/json"}}},
		{"xhr", "GET", http.Header{"Accept": {"text/html"}, "X-Requested-With": {"XMLHttpRequest"}}},
		{"post-form", "POST", http.Header{"Accept": {"text/html"}}},
		{"no-accept", "GET", http.Header{}},
		{"garbage-bearer", "GET", http.Header{"Accept": {"application/json"}, "Authorization": {"Bearer not-a-token"}}},
		{"tampered-bearer", "GET", http.Header{"Accept": {"application/json"}, "Authorization": {"Bearer " + tamper(alice.token)}}},
		{"oversized-bearer", "GET", http.Header{"Accept": {"application/json"}, "Authorization": {"Bearer " + strings.Repeat("A", 5000)}}},
		{"token-in-wrong-cookie", "GET", http.Header{"Accept": {"application/json"}, "Cookie": {"other=" + alice.token}}},
	}
	for _, tr := range s.Traefiks {
		for _, c := range cases {
			req, _ := http.NewRequest(c.method, tr.URL+path, nil)
			for k, v := range c.header {
				req.Header[k] = v
			}
			resp, body, err := harness.NewBrowser("").Do(req)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("%s %s: status %d, want 401 (body %.200s, Location %q)", tr.Spec.Name, c.name, resp.StatusCode, body, resp.Header.Get("Location"))
				continue
			}
			// A presented token that is refused says so (RFC 6750 invalid_token
			// with edgepass's reason code); no token gets the bare challenge.
			want := `Bearer realm="edgepass"`
			if strings.Contains(c.name, "bearer") {
				want = `Bearer realm="edgepass", error="invalid_token", error_description="bad_token"`
			}
			if got := resp.Header.Get("WWW-Authenticate"); got != want {
				t.Errorf("%s %s: WWW-Authenticate %q, want %q", tr.Spec.Name, c.name, got, want)
			}
			var e struct{ Error string }
			if err := json.Unmarshal(body, &e); err != nil || e.Error != "authentication required" {
				t.Errorf("%s %s: body %q, want {\"error\":\"authentication required\"}", tr.Spec.Name, c.name, body)
			}
		}

		// The session token as a bearer token (a fresh client, no cookie).
		code, body, e := get(t, tr.URL+path, bearer(alice.token))
		if code != http.StatusOK || e == nil {
			t.Fatalf("%s: bearer token: %d %.200s", tr.Spec.Name, code, body)
		}
		checkAliceHeaders(t, e)
		if e.Get("Authorization") == "" {
			t.Logf("%s: the backend does not see the Authorization header", tr.Spec.Name)
		}
		// The cookie works for XHR too.
		resp, body, err := alice.browser.API("GET", tr.URL+path, http.Header{"X-Requested-With": {"XMLHttpRequest"}})
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: XHR with the session cookie: %v %d %.200s", tr.Spec.Name, err, resp.StatusCode, body)
		}
	}
}

// tamper flips one character of the signature.
func tamper(tok string) string {
	i := strings.LastIndexByte(tok, '.') + 5
	c := byte('A')
	if tok[i] == 'A' {
		c = 'B'
	}
	return tok[:i] + string(c) + tok[i+1:]
}
