package serve

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/edgepass/edgepass/daemon/console"
	"github.com/edgepass/edgepass/daemon/events"
	"github.com/edgepass/edgepass/daemon/internal/fakeidp"
)

// TestConsoleAndAuditTrailWiring runs a whole daemon with the console on
// (also under publicURL): an administrator signs in through the IdP (the
// real oidcflow sign-in), ends a user's session from the console, and the
// admin API's event log names them; an API change names its token.
func TestConsoleAndAuditTrailWiring(t *testing.T) {
	idp := fakeidp.Start("edgepass", fakeidp.User{Subject: "u-bob", Email: "bob@example.com", Username: "bob", Groups: []string{"staff"}})
	defer idp.Close()
	cfg := testConfig(t, idp, t.TempDir())
	cfg.Admin.Console.Enabled, cfg.Admin.Console.Public, cfg.Admin.Console.Groups = true, true, []string{"admins"}
	d := start(t, cfg)
	bearer := map[string]string{"Authorization": "Bearer " + adminToken}

	// bob signs in at the edge.
	if _, _, err := fakeidp.Login("http://"+d.PublicAddr(), "", cfg.Session.CookieName); err != nil {
		t.Fatalf("bob's login: %v", err)
	}

	// The console is on both listeners, behind a sign-in.
	for _, u := range []string{d.admin("/console/users"), d.url("/console/users")} {
		if code, hdr, _ := do(t, "GET", u, nil); code != http.StatusFound || !strings.HasPrefix(hdr.Get("Location"), "/console/signin") ||
			hdr.Get("Content-Security-Policy") != console.CSP {
			t.Errorf("%s: %d %v, want a redirect to sign in with the console's CSP", u, code, hdr)
		}
	}
	// The admin API is still there next to it.
	if code, _, body := do(t, "GET", d.admin("/api/v1/sessions"), bearer); code != 200 || !strings.Contains(body, "u-bob") {
		t.Fatalf("admin API: %d %s", code, body)
	}

	// alice, an administrator, signs in to the public console.
	idp.SetUser(fakeidp.User{Subject: "u-alice", Email: "alice@example.com", Username: "alice", Groups: []string{"staff", "admins"}})
	jar, _ := cookiejar.New(nil)
	client := &http.Client{Jar: jar, Timeout: 10 * time.Second}
	resp, err := client.Get(d.url("/console/users?q=bob"))
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(page), "bob@example.com") || !strings.Contains(string(page), ">alice<") {
		t.Fatalf("after signing in through the IdP: %d at %s\n%s", resp.StatusCode, resp.Request.URL, page)
	}
	_, rest, _ := strings.Cut(string(page), `name="csrf" value="`)
	csrf, _, _ := strings.Cut(rest, `"`)

	var list struct {
		Sessions []struct {
			ID string `json:"id"`
		} `json:"sessions"`
	}
	_, _, body := do(t, "GET", d.admin("/api/v1/sessions?user=bob"), bearer)
	if err := json.Unmarshal([]byte(body), &list); err != nil || len(list.Sessions) != 1 {
		t.Fatalf("bob's sessions: %s", body)
	}
	form := url.Values{"csrf": {csrf}, "sid": {list.Sessions[0].ID}, "reason": {"test"}}
	req, _ := http.NewRequest("POST", d.url("/console/session/end"), strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", "http://"+d.PublicAddr())
	resp, err = client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(resp.Request.URL.String(), "done=session") {
		t.Fatalf("end session from the console: %d at %s", resp.StatusCode, resp.Request.URL)
	}

	// An API change, then the log.
	if code, _, body := do(t, "POST", d.admin("/api/v1/keys/rotate?reason=drill"), bearer); code != 200 {
		t.Fatalf("rotate: %d %s", code, body)
	}
	_, _, body = do(t, "GET", d.admin("/api/v1/events?limit=20"), bearer)
	var p events.Page
	if err := json.Unmarshal([]byte(body), &p); err != nil {
		t.Fatalf("events: %v %s", err, body)
	}
	want := []string{
		"key_rotated by admin (token) via api: drill",
		"session_revoked by alice (admin) via console: test",
		"console_signin by alice (admin) via console: ",
		"session_created by bob (user) via user: ",
	}
	var got []string
	for _, e := range p.Events {
		got = append(got, e.Kind+" by "+e.Actor+" ("+e.ActorType+") via "+e.Source+": "+e.Reason)
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("events, newest first:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
