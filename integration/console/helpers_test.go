package console

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/edgepass/edgepass/integration/harness"
)

// stepTimeout bounds one browser step.
const stepTimeout = 30 * time.Second

func needBrowser(t *testing.T) {
	t.Helper()
	if chromium == "" {
		t.Skip("no Chromium found: install Debian's chromium package (apt-get install -y chromium) or set EDGEPASS_CHROMIUM")
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("component logs (%s):\n%s", stack.LogDir, stack.Diagnostics(25))
		}
	})
}

func consoleURL(path string) string { return stack.Daemon.AdminURL + "/console/" + path }

// The administrator's browser context (its own cookie jar) is signed in
// once; every test opens its own tab in it.
var (
	adminOnce sync.Once
	adminBC   context.Context
	adminErr  error
)

// adminTab returns a new tab of alice (an administrator: group admins at
// the provider), signed in to the console.
func adminTab(t *testing.T) context.Context {
	t.Helper()
	adminOnce.Do(func() {
		adminBC, _ = chromedp.NewContext(browserCtx, chromedp.WithNewBrowserContext())
		adminErr = func() error {
			if err := chromedp.Do(adminBC); err != nil { // the tab lives as long as adminBC
				return err
			}
			ctx, cancel := context.WithTimeout(adminBC, time.Minute)
			defer cancel()
			if err := chromedp.Do(ctx, chromedp.Navigate(consoleURL(""))); err != nil {
				return err
			}
			if _, err := providerSignIn(ctx, harness.AliceUser, harness.AlicePassword); err != nil {
				return err
			}
			loc, err := chromedp.Run(ctx, chromedp.Location())
			if err != nil {
				return err
			}
			if loc != consoleURL("") {
				return fmt.Errorf("after signing in the browser is at %s, want the console's overview", loc)
			}
			return saveShot(ctx, "01-signed-in-overview")
		}()
	})
	if adminErr != nil {
		t.Fatalf("alice cannot sign in to the console: %v", adminErr)
	}
	return newTab(t, adminBC)
}

// newTab opens a tab in parent's browser context, closed when the test ends.
func newTab(t *testing.T, parent context.Context) context.Context {
	t.Helper()
	ctx, cancel := chromedp.NewContext(parent)
	return openTab(t, ctx, cancel)
}

// incognito returns a tab in a fresh browser context (no cookies).
func incognito(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := chromedp.NewContext(browserCtx, chromedp.WithNewBrowserContext())
	return openTab(t, ctx, cancel)
}

// openTab creates the tab now, with the tab's own context: chromedp ties a
// tab to the context of the call that creates it, so creating it inside a
// step's timeout would close it when that step ends.
func openTab(t *testing.T, ctx context.Context, cancel context.CancelFunc) context.Context {
	t.Helper()
	t.Cleanup(cancel)
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("open a browser tab: %v", err)
	}
	return ctx
}

// providerSignIn fills the provider's sign-in form (and its consent form
// when it shows one) in the current page and returns the response of the
// page the browser lands on.
func providerSignIn(parent context.Context, user, password string) (*network.Response, error) {
	ctx, cancel := context.WithTimeout(parent, stepTimeout)
	defer cancel()
	if err := chromedp.Do(ctx,
		chromedp.WaitVisible(chromedp.CSS(`#login input[name="login"]`)),
		chromedp.SendKeys(chromedp.CSS(`#login input[name="login"]`), user),
		chromedp.SendKeys(chromedp.CSS(`#login input[name="password"]`), password),
	); err != nil {
		return nil, fmt.Errorf("provider sign-in form: %w", err)
	}
	resp, err := chromedp.RunResponse(ctx, chromedp.Click(chromedp.CSS(`#login button[type="submit"]`)))
	if err != nil {
		return nil, fmt.Errorf("submit the sign-in form: %w", err)
	}
	for i := 0; i < 2; i++ {
		consent, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`!!document.getElementById("consent")`))
		if err != nil {
			return nil, err
		}
		if !consent {
			return resp, nil
		}
		if resp, err = chromedp.RunResponse(ctx, chromedp.Click(chromedp.CSS(`#consent button`))); err != nil {
			return nil, fmt.Errorf("consent: %w", err)
		}
	}
	return resp, nil
}

// do runs browser steps, failing the test (with a screenshot) on error.
func do(t *testing.T, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, stepTimeout)
	defer cancel()
	if err := chromedp.Do(sctx, steps...); err != nil {
		failShot(t, ctx)
		t.Fatalf("%s: %v", what, err)
	}
}

// get runs one browser action with a value.
func get[T any](t *testing.T, ctx context.Context, what string, a chromedp.Action[T]) T {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, stepTimeout)
	defer cancel()
	v, err := chromedp.Run(sctx, a)
	if err != nil {
		failShot(t, ctx)
		t.Fatalf("%s: %v", what, err)
	}
	return v
}

// open navigates and returns the document's HTTP status.
func open(t *testing.T, ctx context.Context, url string) int64 {
	t.Helper()
	resp := get(t, ctx, "open "+url, chromedp.NavigateResponse(url))
	return resp.Status
}

// submit clicks a button that submits a form and returns the status of the
// page it leads to (after redirects).
func submit(t *testing.T, ctx context.Context, sel string) int64 {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, stepTimeout)
	defer cancel()
	resp, err := chromedp.RunResponse(sctx, chromedp.Click(chromedp.CSS(sel)))
	if err != nil {
		failShot(t, ctx)
		t.Fatalf("click %s: %v", sel, err)
	}
	return resp.Status
}

func text(t *testing.T, ctx context.Context, sel string) string {
	t.Helper()
	return get(t, ctx, "text of "+sel, chromedp.Text(chromedp.CSS(sel)))
}

func location(t *testing.T, ctx context.Context) string {
	return get(t, ctx, "location", chromedp.Location())
}

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9_.-]+`)

// saveShot writes a full-page PNG of the tab to the artifacts directory.
func saveShot(ctx context.Context, name string) error {
	sctx, cancel := context.WithTimeout(ctx, stepTimeout)
	defer cancel()
	png, err := chromedp.Run(sctx, chromedp.FullScreenshot(100))
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(artifacts, unsafeName.ReplaceAllString(name, "_")+".png"), png, 0o644)
}

func shot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	if err := saveShot(ctx, name); err != nil {
		t.Errorf("screenshot %s: %v", name, err)
	}
}

func failShot(t *testing.T, ctx context.Context) {
	name := "FAILED-" + t.Name()
	if err := saveShot(context.WithoutCancel(ctx), name); err == nil {
		t.Logf("screenshot of the failing page: %s", filepath.Join(artifacts, unsafeName.ReplaceAllString(name, "_")+".png"))
	}
}

// edgeUser is a user signed in at the edge (through Traefik).
type edgeUser struct {
	browser *harness.Browser
	token   string
	sid     string
}

// signInAtEdge signs user in as a browser does through the first Traefik
// replica, and returns their session.
func signInAtEdge(t *testing.T, user, password string) *edgeUser {
	t.Helper()
	target := fmt.Sprintf("%s%s/console-test?n=%s", stack.Traefiks[0].URL, harness.PathApp, harness.RandomSecret(4))
	b, tok, err := harness.SignInAt(stack.Provider.Issuer, target, user, password)
	if err != nil {
		t.Fatalf("sign in as %s at the edge: %v", user, err)
	}
	var claims struct {
		SessionID string `json:"sid"`
	}
	if err := harness.DecodeJWT(tok, &struct{}{}, &claims); err != nil || claims.SessionID == "" {
		t.Fatalf("session token: %v", err)
	}
	return &edgeUser{browser: b, token: tok, sid: claims.SessionID}
}

// routeStatus is what a replica answers a request for path with the
// bearer token tok.
func routeStatus(tr *harness.Traefik, path, tok string) (int, error) {
	code, _, err := harness.APIGet(tr.URL+path, http.Header{"Authorization": {"Bearer " + tok}}, 5*time.Second)
	return code, err
}

// waitEdges polls every replica until each answers want for tok.
func waitEdges(t *testing.T, tok string, want int, within time.Duration, what string) time.Duration {
	t.Helper()
	return waitRoute(t, harness.PathApp+"/console-test", tok, want, within, what)
}

// waitRoute polls every replica until each answers want for path and tok.
func waitRoute(t *testing.T, path, tok string, want int, within time.Duration, what string) time.Duration {
	t.Helper()
	start := time.Now()
	for _, tr := range stack.Traefiks {
		if _, err := harness.WaitEvery(20*time.Millisecond, within-time.Since(start), func() (bool, string) {
			code, err := routeStatus(tr, path, tok)
			return err == nil && code == want, fmt.Sprintf("%d (%v)", code, err)
		}); err != nil {
			t.Fatalf("%s: %s did not answer %d: %v", what, tr.Spec.Name, want, err)
		}
	}
	return time.Since(start)
}

// sessionStored reports whether the daemon still holds session sid.
func sessionStored(t *testing.T, sid string) bool {
	t.Helper()
	code, body, err := stack.Daemon.Admin("GET", "/api/v1/sessions/"+sid, nil)
	if err != nil || code != http.StatusOK && code != http.StatusNotFound {
		t.Fatalf("admin API: %d %s %v", code, body, err)
	}
	return code == http.StatusOK
}

// cli runs the edgepass CLI against the daemon (admin token).
func cli(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, _, err := stack.Daemon.CLI(ctx, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func contains(haystack string, needles ...string) bool {
	for _, n := range needles {
		if !strings.Contains(haystack, n) {
			return false
		}
	}
	return true
}
