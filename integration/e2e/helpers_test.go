package e2e

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgepass/edgepass/integration/harness"
)

// tokenClaims are the session token's claims (docs/contracts.md), decoded
// without verification: the test checks what the daemon issued.
type tokenClaims struct {
	Kid               string   `json:"-"`
	Issuer            string   `json:"iss"`
	Audience          any      `json:"aud"`
	Subject           string   `json:"sub"`
	SessionID         string   `json:"sid"`
	IssuedAt          int64    `json:"iat"`
	Expiry            int64    `json:"exp"`
	Email             string   `json:"email"`
	Name              string   `json:"name"`
	PreferredUsername string   `json:"preferred_username"`
	Groups            []string `json:"groups"`
}

func decodeToken(t *testing.T, raw string) tokenClaims {
	t.Helper()
	var h struct {
		Alg, Kid, Typ string
	}
	var c tokenClaims
	if err := harness.DecodeJWT(raw, &h, &c); err != nil {
		t.Fatalf("session token: %v", err)
	}
	if h.Alg != "EdDSA" {
		t.Fatalf("token alg %q, want EdDSA", h.Alg)
	}
	c.Kid = h.Kid
	return c
}

// login is a signed-in user: the browser (with its cookie jar) and the
// session token from the cookie.
type login struct {
	browser *harness.Browser
	token   string
	claims  tokenClaims
}

// signIn opens a protected page on the first Traefik replica as a browser,
// signs in at the provider, and checks the browser is back on that page
// with a session cookie.
func signIn(t *testing.T, s *harness.Stack, user, password string) *login {
	t.Helper()
	start := fmt.Sprintf("%s%s/signed-in-as-%s?n=%s", s.Traefiks[0].URL, harness.PathApp, user, harness.RandomSecret(4))
	b, tok, err := harness.SignInAt(s.Provider.Issuer, start, user, password)
	if err != nil {
		t.Fatalf("sign in as %s: %v", user, err)
	}
	return &login{browser: b, token: tok, claims: decodeToken(t, tok)}
}

// restartable is a component a scenario kills and restarts (the daemon,
// nats-server).
type restartable interface {
	Kill() error
	Exited() (bool, error)
	Restart() error
}

// kill9 kills c with SIGKILL (a crash) and, should the test end with it
// still down, restarts it for the tests that follow.
func kill9(t *testing.T, c restartable, name string) {
	t.Helper()
	if err := c.Kill(); err != nil {
		t.Fatalf("kill -9 %s: %v", name, err)
	}
	t.Cleanup(func() {
		if exited, _ := c.Exited(); exited {
			if err := c.Restart(); err != nil {
				t.Errorf("%s restart: %v", name, err)
			}
		}
	})
}

func bearer(token string) http.Header {
	return http.Header{"Authorization": {"Bearer " + token}}
}

// get sends an API-style GET (harness.APIGet) with extra headers and
// returns the status, the body and, when the backend answered, what it saw.
func get(t *testing.T, rawURL string, header http.Header) (int, []byte, *harness.Echoed) {
	t.Helper()
	code, body, err := harness.APIGet(rawURL, header, 10*time.Second)
	if err != nil {
		t.Fatalf("GET %s: %v", rawURL, err)
	}
	e, _ := harness.DecodeEchoed(body)
	return code, body, e
}

// status is get's status only (no t.Fatal on network errors: used in polls).
func status(rawURL string, header http.Header) (int, error) {
	code, _, err := harness.APIGet(rawURL, header, 5*time.Second)
	return code, err
}

// mustStatus checks the status of an API GET on every replica.
func mustStatus(t *testing.T, replicas []*harness.Traefik, path string, header http.Header, want int, why string) {
	t.Helper()
	for _, tr := range replicas {
		code, body, _ := get(t, tr.URL+path, header)
		if code != want {
			t.Fatalf("%s: GET %s on %s = %d, want %d; body: %.300s", why, path, tr.Spec.Name, code, want, body)
		}
	}
}

// waitStatus polls path on every replica until each answers want, and
// returns how long each took. On timeout it fails with the edge bucket's
// keys, so the failure says whether the daemon published the fact.
func waitStatus(t *testing.T, s *harness.Stack, replicas []*harness.Traefik, path string, header http.Header, want int, timeout time.Duration, what string) map[string]time.Duration {
	t.Helper()
	start := time.Now()
	var mu sync.Mutex
	took := map[string]time.Duration{}
	last := map[string]string{}
	var wg sync.WaitGroup
	for _, tr := range replicas {
		wg.Add(1)
		go func(tr *harness.Traefik) {
			defer wg.Done()
			for time.Since(start) < timeout {
				code, err := status(tr.URL+path, header)
				mu.Lock()
				if err != nil {
					last[tr.Spec.Name] = err.Error()
				} else {
					last[tr.Spec.Name] = fmt.Sprint(code)
				}
				mu.Unlock()
				if err == nil && code == want {
					mu.Lock()
					took[tr.Spec.Name] = time.Since(start)
					mu.Unlock()
					return
				}
				time.Sleep(10 * time.Millisecond)
			}
		}(tr)
	}
	wg.Wait()
	if len(took) != len(replicas) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		keys, err := harness.EdgeKeys(ctx, s.NATSAccess())
		cancel()
		t.Fatalf("%s: not every replica answered %d on %s within %s; last answers: %v; reached: %v\nedge bucket keys: %v (err %v)",
			what, want, path, timeout, last, took, keys, err)
	}
	return took
}

func formatDurations(m map[string]time.Duration) string {
	var names []string
	for n := range m {
		names = append(names, n)
	}
	sort.Strings(names)
	var parts []string
	for _, n := range names {
		parts = append(parts, fmt.Sprintf("%s %s", n, m[n].Round(time.Millisecond)))
	}
	return strings.Join(parts, ", ")
}

func splitGroups(v string) []string {
	var out []string
	for _, g := range strings.Split(v, ",") {
		if g = strings.TrimSpace(g); g != "" {
			out = append(out, g)
		}
	}
	sort.Strings(out)
	return out
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	sort.Strings(a)
	sort.Strings(b)
	return slices.Equal(a, b)
}

func cli(t *testing.T, d *harness.Daemon, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, _, err := d.CLI(ctx, args...)
	if err != nil {
		t.Fatalf("CLI: %v\nstdout: %s", err, out)
	}
	return out
}

func admin(t *testing.T, d *harness.Daemon, method, path string, body any) (int, []byte) {
	t.Helper()
	code, data, err := d.Admin(method, path, body)
	if err != nil {
		t.Fatalf("admin API: %v", err)
	}
	return code, data
}
