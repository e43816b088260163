package oidcflow

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// bounce is one round trip of a login loop: /login?rd=, the IdP (signed in
// already), the callback; the edge then refuses the fresh cookie and sends
// the browser to /login again. It returns the last response and its body.
func (e *env) bounce(t *testing.T, c *http.Client, rd string) (*http.Response, string) {
	t.Helper()
	u := e.srv.URL + "/login?rd=" + url.QueryEscape(rd)
	for hop := 0; hop < 3; hop++ {
		resp, err := c.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		loc := resp.Header.Get("Location")
		if resp.StatusCode != http.StatusFound || !strings.HasPrefix(loc, e.srv.URL) && !strings.HasPrefix(loc, e.idp.issuer()) {
			return resp, string(body)
		}
		u = loc
	}
	t.Fatal("login took more than 3 hops")
	return nil, ""
}

// Login loop: an edge that refuses every session (a wrong NATS password, a
// missing trust anchor, a cookie domain that does not cover the app) sent a
// signed-in browser back to /login 20 times, minting a session each time.
func TestLoginLoopStopsMintingSessions(t *testing.T) {
	var logs bytes.Buffer
	e := newEnv(t, func(o *Options) { o.Logger = slog.New(slog.NewTextHandler(&logs, nil)) })
	c := browser(t)
	rd := "https://wiki.example.org/page"
	var resp *http.Response
	var body string
	for i := 0; i < 20; i++ {
		if resp, body = e.bounce(t, c, rd); resp.StatusCode != http.StatusFound {
			break
		}
	}
	if n := e.store.Len(); n > loopLimit {
		t.Errorf("%d sessions minted by the loop, want at most %d", n, loopLimit)
	}
	if resp.StatusCode != http.StatusConflict {
		t.Fatalf("the loop ended with status %d, want 409 and an explanation", resp.StatusCode)
	}
	for _, want := range []string{"refuses", "wiki.example.org", "NATS", "trustAnchors", "edgepass edges", "cookie domain"} {
		if !strings.Contains(body, want) {
			t.Errorf("the loop page does not mention %q:\n%s", want, body)
		}
	}
	if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "host=wiki.example.org") {
		t.Errorf("no warning naming the return URL's host:\n%s", logs.String())
	}
	if strings.Contains(body, "<script") {
		t.Error("the loop page has a script")
	}
}

// A second login now and then is no loop: bounces are counted only with a
// session issued seconds ago, and only within the window.
func TestLoginLoopNeedsQuickRepeatedBounces(t *testing.T) {
	cases := map[string]struct {
		bounces int
		gap     time.Duration // clock advance between bounces
		blocked bool
		pages   bool // each bounce for another return URL
	}{
		// A user signing in again and again for different pages (or an
		// attacker probing return URLs) is not an edge refusing a session.
		"quick logins for different pages":   {bounces: 8, gap: time.Second, blocked: false, pages: true},
		"as many quick bounces as the limit": {bounces: loopLimit, gap: time.Second, blocked: false},
		"enough quick bounces":               {bounces: loopLimit + 1, gap: time.Second, blocked: true},
		"bounces minutes apart":              {bounces: 8, gap: 3 * time.Minute, blocked: false},
		"bounces with stale sessions":        {bounces: 8, gap: loopFresh + time.Second, blocked: false},
		"a slow loop":                        {bounces: loopLimit + 1, gap: loopFresh - time.Second, blocked: true},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, nil)
			now := time.Now()
			e.h.now = func() time.Time { return now }
			c := browser(t)
			var resp *http.Response
			for i := 0; i < tc.bounces; i++ {
				rd := "https://app.example.com/"
				if tc.pages {
					rd += fmt.Sprintf("page-%d", i)
				}
				resp, _ = e.bounce(t, c, rd)
				now = now.Add(tc.gap)
			}
			if blocked := resp.StatusCode == http.StatusConflict; blocked != tc.blocked {
				t.Fatalf("last bounce: status %d; blocked %v, want %v", resp.StatusCode, blocked, tc.blocked)
			}
		})
	}
}

// Attack: a forged or replayed-from-long-ago loop cookie neither blocks a
// login nor survives: only a cookie the daemon sealed within the window counts.
func TestLoginLoopCookieIsSealed(t *testing.T) {
	e := newEnv(t, nil)
	c := browser(t)
	e.bounce(t, c, "https://app.example.com/") // a fresh session
	u, _ := url.Parse(e.srv.URL)
	forged := (&loopState{N: 99, First: time.Now().Unix()})
	c.Jar.SetCookies(u, []*http.Cookie{{Name: e.h.cookies.loop, Value: string(mustJSON(forged)), Path: "/"}})
	if resp, _ := e.bounce(t, c, "https://app.example.com/"); resp.StatusCode != http.StatusFound {
		t.Fatalf("a forged loop cookie blocked the login: status %d", resp.StatusCode)
	}
}
