package console

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/edgepass/edgepass/integration/harness"
)

// endBobsSessionInConsole finds bob in the console the way a person does
// (search, his page) and ends the session sid with the button in its row.
func endBobsSessionInConsole(t *testing.T, sid, shotPrefix string) {
	t.Helper()
	ctx := adminTab(t)
	if code := open(t, ctx, consoleURL("users")); code != http.StatusOK {
		t.Fatalf("users page: %d", code)
	}
	do(t, ctx, "search for bob", chromedp.SendKeys(chromedp.CSS("#q"), "bob"))
	if code := submit(t, ctx, `form.search button[type="submit"]`); code != http.StatusOK {
		t.Fatalf("search: %d", code)
	}
	rows := get(t, ctx, "users found", chromedp.Evaluate[[]string](`[...document.querySelectorAll("#users tbody a")].map(a => a.textContent)`))
	if len(rows) != 1 || rows[0] != harness.BobUser {
		t.Fatalf("search for bob lists %q", rows)
	}
	if shotPrefix != "" {
		shot(t, ctx, shotPrefix+"-users-search-bob")
	}
	if code := submit(t, ctx, `#users tbody a`); code != http.StatusOK {
		t.Fatalf("bob's page: %d", code)
	}
	if shotPrefix != "" {
		shot(t, ctx, shotPrefix+"-user-bob")
	}
	if code := submit(t, ctx, fmt.Sprintf(`button[data-end="%s"]`, sid)); code != http.StatusOK {
		t.Fatalf("end session: %d", code)
	}
	if msg := text(t, ctx, "#done"); !strings.Contains(msg, "ended at every edge") {
		t.Fatalf("after ending the session the page says %q", msg)
	}
	if shotPrefix != "" {
		shot(t, ctx, shotPrefix+"-session-ended")
	}
}

// TestConsoleAdminEndsBobsSessionAndTraefikRefusesBob: an administrator
// signs in through the provider, finds bob's session and ends it; bob's
// next request through either Traefik replica is refused.
func TestConsoleAdminEndsBobsSessionAndTraefikRefusesBob(t *testing.T) {
	needBrowser(t)
	bob := signInAtEdge(t, harness.BobUser, harness.BobPassword)
	waitEdges(t, bob.token, http.StatusOK, 10*time.Second, "bob before")
	endBobsSessionInConsole(t, bob.sid, "02")
	took := waitEdges(t, bob.token, http.StatusUnauthorized, 10*time.Second, "bob after the console ended his session")
	t.Logf("both replicas refused bob %s after the console answered", took.Round(time.Millisecond))
	if sessionStored(t, bob.sid) {
		t.Error("the daemon still holds bob's session")
	}
	// The browser holding bob's cookie is sent to sign in again.
	req, _ := harness.NavRequest("GET", stack.Traefiks[1].URL+harness.PathApp+"/console-test", nil)
	resp, _, err := bob.browser.Do(req)
	if err != nil || resp.StatusCode != http.StatusFound || !strings.HasPrefix(resp.Header.Get("Location"), stack.Daemon.LoginURL()) {
		t.Fatalf("bob's browser: %v %v, want 302 to the login", err, resp)
	}
}

// TestConsoleNonAdminGets403: bob (not in admins) signs in to the console
// at the provider; he gets 403, no console cookie, and no data.
func TestConsoleNonAdminGets403(t *testing.T) {
	needBrowser(t)
	ctx := incognito(t)
	do(t, ctx, "open the console", chromedp.Navigate(consoleURL("users")))
	resp, err := providerSignIn(ctx, harness.BobUser, harness.BobPassword)
	if err != nil {
		failShot(t, ctx)
		t.Fatalf("%v (at %s)", err, location(t, ctx))
	}
	if resp.Status != http.StatusForbidden {
		t.Fatalf("bob's console sign-in landed on %s with %d, want 403", location(t, ctx), resp.Status)
	}
	shot(t, ctx, "03-non-admin-403")
	body := get(t, ctx, "page text", chromedp.Evaluate[string](`document.body.innerText`))
	for _, leak := range []string{harness.AliceEmail, harness.AliceUser, "traefik", "Sign out", "Users"} {
		if strings.Contains(body, leak) {
			t.Errorf("the 403 page shows %q:\n%s", leak, body)
		}
	}
	cookies := get(t, ctx, "cookies", chromedp.Evaluate[string](`document.cookie`))
	if strings.Contains(cookies, "edgepass_console=") {
		t.Errorf("bob holds a console cookie: %q", cookies)
	}
	// A second try goes through the provider again and is refused again.
	if code := open(t, ctx, consoleURL("events")); code != http.StatusForbidden {
		t.Errorf("bob opening the event log: %d, want 403", code)
	}
	// And the API answers nothing without a token.
	if code, _, _ := stack.Daemon.Admin("GET", "/api/v1/events", nil); code != http.StatusOK {
		t.Errorf("the admin token cannot read events: %d", code)
	}
}

// TestConsoleRejectsForgedCrossSitePost: while alice is signed in, a page
// on another origin (a same-site port of 127.0.0.1, where her SameSite=Lax
// cookie is still sent, and a cross-site host) makes her browser post "end
// this session" to the console. Both are refused and the session lives.
func TestConsoleRejectsForgedCrossSitePost(t *testing.T) {
	needBrowser(t)
	victim := signInAtEdge(t, harness.BobUser, harness.BobPassword)
	ctx := adminTab(t)
	attack := fmt.Sprintf(`<!doctype html><title>Win a prize</title><form method="post" action="%s">
<input type="hidden" name="sid" value="%s"><input type="hidden" name="csrf" value="guessed">
<button type="submit" id="prize">Claim your prize</button></form>`, consoleURL("session/end"), victim.sid)
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		_, _ = w.Write([]byte(attack))
	}))
	defer evil.Close()
	_, port, _ := strings.Cut(strings.TrimPrefix(evil.URL, "http://"), ":")
	for i, origin := range []string{evil.URL, "http://localhost:" + port} {
		if code := open(t, ctx, origin+"/"); code != http.StatusOK {
			t.Fatalf("attacker page %s: %d", origin, code)
		}
		if code := submit(t, ctx, "#prize"); code != http.StatusForbidden {
			t.Fatalf("forged POST from %s: %d, want 403", origin, code)
		}
		shot(t, ctx, fmt.Sprintf("04-forged-post-refused-%d", i+1))
	}
	if !sessionStored(t, victim.sid) {
		t.Fatal("a forged cross-site POST ended the session")
	}
	waitEdges(t, victim.token, http.StatusOK, 5*time.Second, "bob after the forged request")
}

// TestConsoleEventLogNamesTheAdminAndUpdatesLive: the event log shows the
// console's action under alice's name, updates itself when a change comes
// in through the CLI, and `edgepass events` reads the same log.
func TestConsoleEventLogNamesTheAdminAndUpdatesLive(t *testing.T) {
	needBrowser(t)
	bob := signInAtEdge(t, harness.BobUser, harness.BobPassword)
	endBobsSessionInConsole(t, bob.sid, "")
	ctx := adminTab(t)
	if code := open(t, ctx, consoleURL("events?user=bob&kind=session_revoked")); code != http.StatusOK {
		t.Fatalf("event log: %d", code)
	}
	row := text(t, ctx, "tbody.event-rows tr:first-child")
	if !contains(row, "session_revoked", "alice (admin)", "console", "bob", bob.sid[:8]) {
		t.Fatalf("the newest session_revoked event about bob reads %q", row)
	}
	shot(t, ctx, "05-event-log-filtered")

	// Live: open the unfiltered log, change bob's groups with the CLI, and
	// wait for the row to appear without a reload.
	if code := open(t, ctx, consoleURL("events")); code != http.StatusOK {
		t.Fatalf("event log: %d", code)
	}
	before := get(t, ctx, "rows", chromedp.Evaluate[int](`document.querySelectorAll("tbody.event-rows tr[data-seq]").length`))
	cli(t, "groups", "set", "--reason=live update test", "sub:bob", "staff,console-test")
	do(t, ctx, "the new event appears by itself", chromedp.WaitVisible(chromedp.CSS("tbody.event-rows tr.fresh")))
	fresh := text(t, ctx, "tbody.event-rows tr.fresh")
	if !contains(fresh, "groups_set", "admin (token)", "cli", "live update test", "groups: staff, console-test") || strings.Contains(fresh, "--reason") {
		t.Errorf("live row reads %q", fresh)
	}
	if after := get(t, ctx, "rows", chromedp.Evaluate[int](`document.querySelectorAll("tbody.event-rows tr[data-seq]").length`)); after != before+1 {
		t.Errorf("rows %d → %d, want one more", before, after)
	}
	shot(t, ctx, "06-event-log-live")
	cli(t, "groups", "clear", "sub:bob")

	out := cli(t, "events", "--kind=session_revoked", "--user=bob")
	if !contains(out, "session_revoked", "alice (admin)", "console") {
		t.Errorf("edgepass events does not show alice's action:\n%s", out)
	}
}

// TestConsoleEdgesPageShowsBothReplicas: both Traefik replicas report to
// the daemon and the edges page lists them, synced.
func TestConsoleEdgesPageShowsBothReplicas(t *testing.T) {
	needBrowser(t)
	ctx := adminTab(t)
	want := []string{stack.Traefiks[0].Spec.Name, stack.Traefiks[1].Spec.Name}
	deadline := time.Now().Add(20 * time.Second)
	for {
		if code := open(t, ctx, consoleURL("edges")); code != http.StatusOK {
			t.Fatalf("edges page: %d", code)
		}
		got := get(t, ctx, "replicas", chromedp.Evaluate[[]string](`[...document.querySelectorAll("#edges tr[data-replica]:not(.stale):not(.warn)")].map(r => r.dataset.replica)`))
		if strings.Join(got, ",") == strings.Join(want, ",") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("synced replicas on the edges page: %q, want %q", got, want)
		}
		time.Sleep(time.Second)
	}
	shot(t, ctx, "07-edges")
}

// TestReadOnlyTokenRefusedByTheRealDaemon: the named read-only token reads
// the audit trail but cannot end a session.
func TestReadOnlyTokenRefusedByTheRealDaemon(t *testing.T) {
	needBrowser(t) // the package starts its stack only with a browser
	bob := signInAtEdge(t, harness.BobUser, harness.BobPassword)
	call := func(method, path string) int {
		req, _ := http.NewRequest(method, stack.Daemon.AdminURL+path, nil)
		req.Header.Set("Authorization", "Bearer "+readOnlyToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := call("GET", "/api/v1/events?limit=5"); code != http.StatusOK {
		t.Errorf("read-only token reading events: %d", code)
	}
	if code := call("DELETE", "/api/v1/sessions/"+bob.sid); code != http.StatusForbidden {
		t.Errorf("read-only token ending a session: %d, want 403", code)
	}
	if !sessionStored(t, bob.sid) {
		t.Error("the read-only token ended the session")
	}
}

// createTokenInConsole fills the Service tokens page's create form in the
// tab (for the machine routes' audience) and returns the token the answer
// shows, its id, and the answer's Cache-Control.
func createTokenInConsole(t *testing.T, ctx context.Context, name string) (raw, sid, cacheControl string) {
	t.Helper()
	if code := open(t, ctx, consoleURL("service-tokens")); code != http.StatusOK {
		t.Fatalf("service tokens page: %d", code)
	}
	do(t, ctx, "fill the create form",
		chromedp.SendKeys(chromedp.CSS("#token-name"), name),
		chromedp.SendKeys(chromedp.CSS("#token-groups"), "robots"),
		chromedp.SendKeys(chromedp.CSS("#token-audiences"), harness.MachineAudience),
		chromedp.SendKeys(chromedp.CSS("#token-expires"), "30m"),
		chromedp.SendKeys(chromedp.CSS(`#create-token input[name="reason"]`), "console browser test"))
	sctx, cancel := context.WithTimeout(ctx, stepTimeout)
	defer cancel()
	resp, err := chromedp.RunResponse(sctx, chromedp.Click(chromedp.CSS("#create-token-button")))
	if err != nil || resp.Status != http.StatusOK {
		failShot(t, ctx)
		t.Fatalf("create %s: %v %v", name, err, resp)
	}
	cacheControl, _ = resp.Headers["Cache-Control"].(string)
	raw = get(t, ctx, "the token", chromedp.Evaluate[string](`document.getElementById("new-token").value`))
	var claims struct {
		SessionID string `json:"sid"`
	}
	if err := harness.DecodeJWT(raw, &struct{}{}, &claims); err != nil || claims.SessionID == "" {
		t.Fatalf("the page shows %q: %v", raw, err)
	}
	return raw, claims.SessionID, cacheControl
}

// TestConsoleServiceTokenCreatedUsedAndRevoked: alice creates a service
// token in the console (shown once, not cached), a script uses it through
// both Traefik replicas on the machine route, alice revokes it in the
// console (through the confirmation page), and the next request through
// Traefik is refused. The event log names alice.
func TestConsoleServiceTokenCreatedUsedAndRevoked(t *testing.T) {
	needBrowser(t)
	ctx := adminTab(t)
	name := "console-robot-" + strings.ToLower(harness.RandomSecret(3))
	raw, sid, cc := createTokenInConsole(t, ctx, name)
	if cc != "no-store" {
		t.Errorf("the page showing the token has Cache-Control %q, want no-store", cc)
	}
	if once := text(t, ctx, "#once"); !strings.Contains(once, "Copy it now; it will not be shown again.") {
		t.Errorf("the created page says %q", once)
	}
	if loc := location(t, ctx); strings.Contains(loc, raw) || loc != consoleURL("service-tokens/create") {
		t.Errorf("the created page is at %s", loc)
	}
	shot(t, ctx, "08-service-token-created")

	path := harness.PathMachine + "/console-test"
	waitRoute(t, path, raw, http.StatusOK, 10*time.Second, "the new service token on the machine route")

	// Back to the list: the token is listed by name, never shown.
	if code := submit(t, ctx, "#tokens-back"); code != http.StatusOK {
		t.Fatalf("back to the list: %d", code)
	}
	row := text(t, ctx, fmt.Sprintf(`#service-tokens tr[data-token="%s"]`, sid))
	if !contains(row, name, "robots", harness.MachineAudience, "alice (admin)") {
		t.Errorf("list row reads %q", row)
	}
	if body := get(t, ctx, "page", chromedp.Evaluate[string](`document.documentElement.outerHTML`)); strings.Contains(body, raw) {
		t.Fatal("the list shows the token")
	}
	if code := submit(t, ctx, fmt.Sprintf(`a[data-revoke="%s"]`, sid)); code != http.StatusOK {
		t.Fatalf("revoke link: %d", code)
	}
	shot(t, ctx, "09-service-token-revoke-confirm")
	waitRoute(t, path, raw, http.StatusOK, 5*time.Second, "the service token after opening the confirmation")
	do(t, ctx, "reason", chromedp.SendKeys(chromedp.CSS("#reason"), "browser test done"))
	if code := submit(t, ctx, "#confirm-button"); code != http.StatusOK {
		t.Fatalf("confirm revoke: %d", code)
	}
	if msg := text(t, ctx, "#done"); !strings.Contains(msg, "revoked") {
		t.Errorf("after revoking the page says %q", msg)
	}
	took := waitRoute(t, path, raw, http.StatusUnauthorized, 5*time.Second, "the service token after the console revoked it")
	t.Logf("both replicas refused the service token %s after the console answered", took.Round(time.Millisecond))
	shot(t, ctx, "10-service-token-revoked")

	if code := open(t, ctx, consoleURL("events?kind=service_token_revoked&user="+name)); code != http.StatusOK {
		t.Fatalf("event log: %d", code)
	}
	if ev := text(t, ctx, "tbody.event-rows tr:first-child"); !contains(ev, "service_token_revoked", "alice (admin)", "console", name, "browser test done", harness.MachineAudience) {
		t.Errorf("the revocation event reads %q", ev)
	}
	if code := open(t, ctx, consoleURL("events?kind=service_token_created&user="+name)); code != http.StatusOK {
		t.Fatalf("event log: %d", code)
	}
	if ev := text(t, ctx, "tbody.event-rows tr:first-child"); !contains(ev, "service_token_created", "alice (admin)", "console", name, "console browser test") || strings.Contains(ev, raw) {
		t.Errorf("the creation event reads %q", ev)
	}
}

// TestConsolePagesAtPhoneAndDesktopWidths renders every page at 375 px and
// 1280 px, saves each as an artifact, and checks nothing overflows the
// page sideways (wide tables scroll inside their own box).
func TestConsolePagesAtPhoneAndDesktopWidths(t *testing.T) {
	needBrowser(t)
	bob := signInAtEdge(t, harness.BobUser, harness.BobPassword)
	ctx := adminTab(t)
	pages := []struct{ name, path string }{
		{"overview", ""}, {"users", "users"}, {"user-bob", "user?sub=bob"}, {"session", "session?sid=" + bob.sid},
		{"end-all-confirm", "user/end?sub=bob"}, {"groups", "groups"}, {"edges", "edges"}, {"keys", "keys"},
		{"rotate-confirm", "keys/rotate"}, {"events", "events"}, {"service-tokens", "service-tokens"},
	}
	for _, width := range []int64{375, 1280} {
		do(t, ctx, "viewport", chromedp.EmulateViewport(width, 800))
		for _, p := range pages {
			if code := open(t, ctx, consoleURL(p.path)); code != http.StatusOK {
				t.Fatalf("%s at %d px: %d", p.name, width, code)
			}
			overflow := get(t, ctx, "overflow", chromedp.Evaluate[int](`document.documentElement.scrollWidth - window.innerWidth`))
			if overflow > 1 {
				t.Errorf("%s at %d px is %d px wider than the screen", p.name, width, overflow)
			}
			// The script loaded under the CSP: the events page goes live.
			if p.name == "events" {
				get(t, ctx, "live status", chromedp.Poll[bool](`document.getElementById("live-status").textContent.startsWith("Live")`, chromedp.WithPollingTimeout(5*time.Second)))
			}
			shot(t, ctx, fmt.Sprintf("page-%s-%dpx", p.name, width))
		}
		// The page showing a new token (a form's answer) and the
		// revocation's confirmation.
		_, sid, _ := createTokenInConsole(t, ctx, fmt.Sprintf("screenshot-%d", width))
		for _, p := range []struct{ name, path string }{{"service-token-created", ""}, {"service-token-revoke-confirm", "service-tokens/revoke?id=" + sid}} {
			if p.path != "" {
				if code := open(t, ctx, consoleURL(p.path)); code != http.StatusOK {
					t.Fatalf("%s at %d px: %d", p.name, width, code)
				}
			}
			if overflow := get(t, ctx, "overflow", chromedp.Evaluate[int](`document.documentElement.scrollWidth - window.innerWidth`)); overflow > 1 {
				t.Errorf("%s at %d px is %d px wider than the screen", p.name, width, overflow)
			}
			shot(t, ctx, fmt.Sprintf("page-%s-%dpx", p.name, width))
		}
		if code, body, err := stack.Daemon.Admin("DELETE", "/api/v1/service-tokens/"+sid, nil); err != nil || code != http.StatusOK {
			t.Errorf("revoke the screenshot token: %d %s %v", code, body, err)
		}
	}
	do(t, ctx, "reset viewport", chromedp.EmulateViewport(1280, 900))
}
