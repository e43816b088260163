package serve

import (
	"html"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/edgepass/edgepass/daemon/internal/fakeidp"
	"github.com/edgepass/edgepass/daemon/internal/poll"
	"github.com/edgepass/edgepass/plugin/token"
)

// The status page names the user as X-Auth-User does: preferred_username,
// else email, else sub.
func TestStatusPageNamesUserLikeVerify(t *testing.T) {
	cases := map[string]struct {
		claims token.Claims
		want   string
	}{
		"username":           {token.Claims{Subject: "u-1", Email: "alice@example.com", PreferredUsername: "alice"}, "alice"},
		"email, no username": {token.Claims{Subject: "u-1", Email: "alice@example.com"}, "alice@example.com"},
		"subject only":       {token.Claims{Subject: "u-1"}, "u-1"},
	}
	for name, c := range cases {
		var d statusData
		d.signedIn(&c.claims)
		if !d.SignedIn || d.User != c.want {
			t.Errorf("%s: user %q (signed in %v), want %q", name, d.User, d.SignedIn, c.want)
		}
	}
}

// The status page's sign-out button posts the session's token from the
// daemon's own origin; the same POST from another site ends nothing.
func TestStatusPageSignOut(t *testing.T) {
	idp := fakeidp.Start("edgepass", fakeidp.User{Subject: "u-5", Username: "erin"})
	defer idp.Close()
	cfg := testConfig(t, idp, t.TempDir())
	d := start(t, cfg)
	cookie := d.login(t)
	hdr := map[string]string{"Cookie": cfg.Session.CookieName + "=" + cookie.Value}
	_, _, body := do(t, "GET", d.url("/"), hdr)
	m := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("status page has no sign-out token:\n%s", body)
	}
	post := func(origin string) int {
		req, _ := http.NewRequest("POST", d.url("/logout"), strings.NewReader(url.Values{"csrf": {html.UnescapeString(m[1])}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Cookie", hdr["Cookie"])
		req.Header.Set("Origin", origin)
		resp, err := http.DefaultTransport.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	verify := map[string]string{"Cookie": hdr["Cookie"], "X-Forwarded-Proto": "https", "X-Forwarded-Host": "app.example.com", "X-Forwarded-Uri": "/"}
	if code := post("https://evil.example.com"); code != http.StatusForbidden {
		t.Fatalf("cross-site POST: %d, want 403", code)
	}
	if code, _, _ := do(t, "GET", d.url("/verify"), verify); code != 200 {
		t.Fatalf("/verify after a cross-site sign-out attempt = %d, want 200", code)
	}
	if code := post("http://" + d.PublicAddr()); code != http.StatusFound {
		t.Fatalf("sign-out from the status page: %d, want 302", code)
	}
	poll.Until(t, 10*time.Second, "signed out at /verify", func() bool {
		code, _, _ := do(t, "GET", d.url("/verify"), verify)
		return code == http.StatusUnauthorized
	})
}
