package edgepass

import (
	"context"
	"net/http"
	"net/http/httptest"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/edgepass/edgepass/plugin/policy"
)

// Attack (self-inflicted): a misspelled setting — Traefik's decoder drops
// unknown keys — silently opened an admins route to every signed-in user.
func TestNewRefusesUnknownSettingsWithSuggestion(t *testing.T) {
	cases := []struct {
		name string
		edit func(c *Config)
		want string
	}{
		{"allowedGroup", func(c *Config) { c.UnknownSettings = map[string]interface{}{"allowedGroup": []interface{}{"admins"}} },
			`unknown setting "allowedGroup"; did you mean "allowedGroups"?`},
		{"nats.pasword", func(c *Config) { c.NATS.UnknownSettings = map[string]interface{}{"pasword": "x"} },
			`unknown setting "nats.pasword"; did you mean "nats.password"?`},
		{"no close name", func(c *Config) { c.UnknownSettings = map[string]interface{}{"frobnicate": true} },
			`unknown setting "frobnicate"; the route`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig()
			tc.edit(cfg)
			_, err := New(context.Background(), http.NotFoundHandler(), cfg, "x")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

// settingNames must list exactly the Config fields (and natsSettingNames the
// NATSConfig fields), or a valid setting would be suggested wrongly, or a
// renamed one never.
func TestSettingNamesMatchConfig(t *testing.T) {
	fields := func(v interface{}) []string {
		var out []string
		rt := reflect.TypeOf(v)
		for i := 0; i < rt.NumField(); i++ {
			if n := rt.Field(i).Name; n != "UnknownSettings" {
				out = append(out, strings.ToLower(n))
			}
		}
		sort.Strings(out)
		return out
	}
	lower := func(in []string) []string {
		var out []string
		for _, s := range in {
			out = append(out, strings.ToLower(s))
		}
		sort.Strings(out)
		return out
	}
	if got, want := lower(settingNames), fields(Config{}); !reflect.DeepEqual(got, want) {
		t.Errorf("settingNames = %v\nConfig fields = %v", got, want)
	}
	if got, want := lower(natsSettingNames), fields(NATSConfig{}); !reflect.DeepEqual(got, want) {
		t.Errorf("natsSettingNames = %v\nNATSConfig fields = %v", got, want)
	}
}

// Attack (loop): an edge that cannot sync sent a signed-in browser to login
// again and again, minting sessions. It answers 503 and says why.
func TestUnsyncedEdgeRefusesWith503(t *testing.T) {
	m, rec, _, st := withState(t, nil)
	m.s.requireSync = true
	m.s.inlineKeys = nil // no inline jwks: keys only ever come from NATS
	raw := sign(t, testClaims())
	for _, r := range []*http.Request{withCookie(browserRequest("/"), raw), browserRequest("/")} {
		rw := serve(m, r)
		if rw.Code != http.StatusServiceUnavailable || !strings.Contains(rw.Body.String(), `"reason":"not_synced"`) || rw.Header().Get("Location") != "" {
			t.Fatalf("never synced: %d %s %v", rw.Code, rw.Body.String(), rw.Header())
		}
	}
	st.SetSynced(true)
	st.Touch(testNow)
	// Synced, but no key ever arrived and none is inline: still no loop.
	rw := serve(m, withCookie(browserRequest("/"), raw))
	if rw.Code != http.StatusServiceUnavailable || !strings.Contains(rw.Body.String(), `"reason":"no_keys"`) {
		t.Fatalf("no keys: %d %s", rw.Code, rw.Body.String())
	}
	if rec.called != 0 {
		t.Fatal("the backend was called")
	}
	if n := st.Refusals()[policy.NotSynced]; n != 2 {
		t.Errorf("not_synced refusals counted %d, want 2", n)
	}
}

// Attack: a backend replays the credential it received — the session cookie
// or the bearer token — against a route it should not reach.
func TestBackendsGetIdentityNotCredentials(t *testing.T) {
	m, rec, _ := newTest(t, nil) // removeCookie defaults to true
	raw := sign(t, testClaims())
	for i := 0; i < 2; i++ { // the second request takes the fast path
		serve(m, withCookie(browserRequest("/"), raw))
		if c := rec.header.Get("Cookie"); strings.Contains(c, raw) || c != "theme=dark; other=1" {
			t.Fatalf("request %d: backend Cookie = %q", i, c)
		}
	}
	for i := 0; i < 2; i++ {
		r := httptest.NewRequest(http.MethodGet, "/api", nil)
		r.Header.Set("Authorization", "Bearer "+raw)
		if code := serve(m, r).Code; code != http.StatusTeapot {
			t.Fatalf("bearer request %d: status %d", i, code)
		}
		if v, ok := rec.header["Authorization"]; ok && len(v) > 0 {
			t.Fatalf("bearer request %d: backend got Authorization %q", i, v)
		}
		// The fast path once rewrote the Cookie header on Authorization lines.
		if v := rec.header["Cookie"]; len(v) > 0 {
			t.Fatalf("bearer request %d: synthetic Cookie header %q", i, v)
		}
		if rec.header.Get("X-Auth-User") != "alice" {
			t.Fatalf("bearer request %d: no identity", i)
		}
	}
	// The backend's own credentials pass when the session is in the cookie.
	r := withCookie(browserRequest("/"), raw)
	r.Header.Set("Authorization", "Basic YmFja2VuZDpzZWNyZXQ=")
	serve(m, r)
	if rec.header.Get("Authorization") != "Basic YmFja2VuZDpzZWNyZXQ=" {
		t.Fatalf("backend credentials dropped: %v", rec.header)
	}
}

// Each refusal says why in WWW-Authenticate, and logLevel debug logs it
// (rate-limited).
func TestRefusalSaysWhy(t *testing.T) {
	m, _, clk := newTest(t, func(c *Config) { c.LogLevel = "debug" })
	c := testClaims()
	c.Expiry = testNow.Unix() - 3600
	r := httptest.NewRequest(http.MethodGet, "/api", nil)
	r.Header.Set("Authorization", "Bearer "+sign(t, c))
	rw := serve(m, r)
	if rw.Code != http.StatusUnauthorized || !strings.Contains(rw.Header().Get("WWW-Authenticate"), `error_description="expired"`) {
		t.Fatalf("expired: %d %v", rw.Code, rw.Header())
	}
	for i := 0; i < 20; i++ {
		serve(m, httptest.NewRequest(http.MethodGet, "/api", nil))
	}
	if m.logCount <= refusalLogsPerSecond {
		t.Fatalf("logCount %d", m.logCount)
	}
	clk.set(testNow.Add(2e9))
	serve(m, httptest.NewRequest(http.MethodGet, "/api", nil))
	if m.logCount != 1 {
		t.Fatalf("the limit did not reset after a second: %d", m.logCount)
	}
	if _, err := New(context.Background(), http.NotFoundHandler(), func() *Config { c := testConfig(); c.LogLevel = "trace"; return c }(), "x"); err == nil {
		t.Fatal("logLevel trace accepted")
	}
}
