package bench

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/edgepass/edgepass/integration/echo/echoserver"
	"github.com/edgepass/edgepass/integration/harness"
)

// Session is a real session obtained by signing in at the OIDC provider.
type Session struct {
	Token string
	// SessionID and Subject are read from the token's payload (the daemon
	// signed it; the benchmark only needs the ids, not a verification).
	SessionID string
	Subject   string
	User      string
	Took      time.Duration
}

// Cookie is the session's cookie as a Cookie header's value.
func (s *Session) Cookie() string { return harness.SessionCookie + "=" + s.Token }

// CookieHeader is the request header wrk sends.
func (s *Session) CookieHeader() string { return "Cookie: " + s.Cookie() }

// Login signs in as alice the way a browser does: it opens the plugin's
// route, follows the redirect to the daemon and the provider, fills in the
// provider's forms and lands back on the route with the session cookie.
func Login(s *Stack) (*Session, error) {
	start := time.Now()
	_, raw, err := harness.SignInAt(s.Provider.Issuer, s.TraefikURL+Plugin.Path+"/after-login", harness.AliceUser, harness.AlicePassword)
	if err != nil {
		return nil, fmt.Errorf("bench: login through the oidc provider: %w", err)
	}
	sess := &Session{Token: raw, User: harness.AliceUser, Took: time.Since(start)}
	var c struct {
		Sid string `json:"sid"`
		Sub string `json:"sub"`
	}
	if err := harness.DecodeJWT(raw, nil, &c); err != nil {
		return nil, fmt.Errorf("bench: login: the daemon's cookie is not a session token: %w", err)
	}
	if c.Sid == "" || c.Sub == "" {
		return nil, errors.New("bench: login: the daemon's session token has no sid or sub")
	}
	sess.SessionID, sess.Subject = c.Sid, c.Sub
	return sess, nil
}

// probe sends one API-style request (no Accept: text/html, so refusals are
// 401s rather than redirects) and returns the status and body.
func probe(c *http.Client, url, cookie string) (int, []byte, error) {
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Accept", "application/json")
	// CheckRoutes reads the assertion the echo verified (the load does not ask).
	req.Header.Set(echoserver.ShowAssertionHeader, "1")
	if cookie != "" {
		req.Header.Set("Cookie", cookie)
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, body, err
}

// CheckRoutes proves the three routes do what the comparison assumes before
// any load: every one reaches the echo backend with the session; the
// authenticated ones refuse a request without it and hand the backend the
// same verified identity headers; the open one adds none. A benchmark of a
// middleware that lets everything through, or refuses everything, would
// compare nothing.
func CheckRoutes(s *Stack, sess *Session) error {
	c := &http.Client{Timeout: 10 * time.Second}
	cookie := sess.Cookie()
	var identity map[string]string
	for _, v := range s.Variants {
		url := s.TraefikURL + v.Path + "/check"
		status, body, err := probe(c, url, cookie)
		if err != nil {
			return fmt.Errorf("bench: route %s (%s): %w", v.Name, url, err)
		}
		if status != http.StatusOK {
			return fmt.Errorf("bench: route %s (%s) answered %d with a valid session, want 200: %.300s", v.Name, url, status, body)
		}
		echoed, err := harness.DecodeEchoed(body)
		if err != nil {
			return fmt.Errorf("bench: route %s (%s): %w", v.Name, url, err)
		}
		got := map[string]string{}
		for _, h := range []string{harness.HeaderUser, harness.HeaderEmail, harness.HeaderGroups} {
			got[h] = echoed.Get(h)
		}
		if v.Floor {
			if got[harness.HeaderUser] != "alice" || got[harness.HeaderGroups] == "" {
				return fmt.Errorf("bench: the floor plugin did not set its constant identity headers: %v", got)
			}
			continue
		}
		if !v.Authenticated {
			for h, val := range got {
				if val != "" {
					return fmt.Errorf("bench: route %s passed identity header %s=%q to the backend; it has no middleware", v.Name, h, val)
				}
			}
			continue
		}
		if got[harness.HeaderUser] == "" || got[harness.HeaderEmail] == "" || got[harness.HeaderGroups] == "" {
			return fmt.Errorf("bench: route %s did not hand the backend all identity headers: %v", v.Name, got)
		}
		if v.Assertion && (echoed.Assertion == nil || echoed.Assertion.User != got[harness.HeaderUser]) {
			return fmt.Errorf("bench: route %s: the backend did not verify an identity assertion for the session (error %q)", v.Name, echoed.AssertionError)
		}
		if identity == nil {
			identity = got
		} else if fmt.Sprint(identity) != fmt.Sprint(got) {
			return fmt.Errorf("bench: the plugin and ForwardAuth hand the backend different identities: %v vs %v", identity, got)
		}
		status, body, err = probe(c, url, "")
		if err != nil {
			return fmt.Errorf("bench: route %s (%s) without a session: %w", v.Name, url, err)
		}
		if status != http.StatusUnauthorized {
			return fmt.Errorf("bench: route %s (%s) answered %d without a session, want 401: %.300s", v.Name, url, status, body)
		}
	}
	return nil
}

// WaitServing polls the plugin's route with the session until it answers
// 200: the plugin needs the signing keys from NATS before it accepts any
// token.
func WaitServing(s *Stack, sess *Session, timeout time.Duration) error {
	c := &http.Client{Timeout: 5 * time.Second}
	cookie := sess.Cookie()
	deadline := time.Now().Add(timeout)
	for {
		status, body, err := probe(c, s.TraefikURL+Plugin.Path+"/ready", cookie)
		if err == nil && status == http.StatusOK {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("bench: the plugin route did not accept the session within %s (last: %d %v %.200s)", timeout, status, err, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
