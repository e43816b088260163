package e2e

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/edgepass/edgepass/integration/echo/echoserver"
	"github.com/edgepass/edgepass/integration/harness"
	"github.com/edgepass/edgepass/plugin/assertion"
)

// Scenario 16: a route with assertionHeader sends the backend a signed
// identity assertion; the echo backend verifies it with package assertion
// and the daemon's JWKS (as any backend would), on every replica.
func TestBackendVerifiesIdentityAssertion(t *testing.T) {
	s := shared(t)
	alice := signIn(t, s, harness.AliceUser, harness.AlicePassword)
	bob := signIn(t, s, harness.BobUser, harness.BobPassword)
	v, err := assertion.NewVerifier(assertion.VerifierOptions{
		JWKSURL: s.Daemon.PublicURL + "/.well-known/jwks.json", Issuer: s.Daemon.PublicURL, Audience: harness.AssertionAudience,
	})
	if err != nil {
		t.Fatal(err)
	}
	path := harness.PathAsserted + "/whoami"

	// Bob's assertion, captured from the backend's side.
	code, body, e := get(t, s.Traefiks[0].URL+path, showAssertion(bearer(bob.token)))
	if code != http.StatusOK || e == nil || e.Assertion == nil {
		t.Fatalf("bob: %d %.300s", code, body)
	}
	bobsAssertion := e.Headers[assertion.DefaultHeader][0]

	for _, tr := range s.Traefiks {
		// Attack: alice sends bob's (genuine, unexpired) assertion along.
		h := showAssertion(bearer(alice.token))
		h.Set(assertion.DefaultHeader, bobsAssertion)
		code, body, e := get(t, tr.URL+path, h)
		if code != http.StatusOK || e == nil {
			t.Fatalf("%s: %d %.300s", tr.Spec.Name, code, body)
		}
		if e.Assertion == nil {
			t.Fatalf("%s: the backend could not verify the assertion: %q", tr.Spec.Name, e.AssertionError)
		}
		a := e.Assertion
		if a.Subject != harness.AliceUser || a.User != harness.AliceUser || a.Email != "alice@example.com" ||
			!sameSet(a.Groups, []string{"staff", "admins"}) || a.Audience != harness.AssertionAudience || a.Kind != assertion.KindSession ||
			a.Issuer != s.Daemon.PublicURL || a.SessionHash != assertion.HashSessionID(alice.claims.SessionID) {
			t.Fatalf("%s: verified identity %+v", tr.Spec.Name, a)
		}
		if got := e.Headers[assertion.DefaultHeader]; len(got) != 1 || got[0] == bobsAssertion {
			t.Fatalf("%s: the client's assertion header reached the backend", tr.Spec.Name)
		}
		if a.Expiry-a.IssuedAt > assertion.MaxLifetime {
			t.Fatalf("%s: assertion lives %ds", tr.Spec.Name, a.Expiry-a.IssuedAt)
		}
		// The test verifies it too, as a backend in Go would.
		c, err := v.Verify(context.Background(), e.Headers[assertion.DefaultHeader][0])
		if err != nil || c.Subject != harness.AliceUser {
			t.Fatalf("%s: %v %+v", tr.Spec.Name, err, c)
		}
		// Routes without assertionHeader send none.
		_, _, plain := get(t, tr.URL+harness.PathApp+"/x", showAssertion(bearer(alice.token)))
		if plain == nil || len(plain.Headers[assertion.DefaultHeader]) != 0 {
			t.Fatalf("%s: a route without assertionHeader sent an assertion", tr.Spec.Name)
		}
	}

	// Attack: present the session token itself to the backend as the
	// assertion (straight to the backend, past Traefik): refused.
	req, _ := http.NewRequest("GET", s.Echo.URL+"/direct", nil)
	req.Header.Set("Accept", "application/json")
	req.Header.Set(assertion.DefaultHeader, alice.token)
	req.Header.Set(echoserver.ShowAssertionHeader, "1")
	resp, body, err := harness.NewBrowser("").Do(req)
	if err != nil {
		t.Fatal(err)
	}
	de, err := harness.DecodeEchoed(body)
	if err != nil || resp.StatusCode != http.StatusOK || de.Assertion != nil || de.AssertionError == "" {
		t.Fatalf("the session token passed as an assertion: %v %+v", err, de)
	}
	if _, err := v.Verify(context.Background(), alice.token); err == nil {
		t.Fatal("the session token verified as an assertion")
	}
}

// A revoked session gets no assertion at any edge within a second, and the
// daemon refuses to mint one for it.
func TestRevokedSessionGetsNoAssertionAtAnyEdge(t *testing.T) {
	s := shared(t)
	bob := signIn(t, s, harness.BobUser, harness.BobPassword)
	path := harness.PathAsserted + "/revoked"
	mustStatus(t, s.Traefiks, path, bearer(bob.token), http.StatusOK, "before revocation")
	start := time.Now()
	if code, body := admin(t, s.Daemon, "DELETE", "/api/v1/sessions/"+bob.claims.SessionID, nil); code != http.StatusOK {
		t.Fatalf("revoke: %d %s", code, body)
	}
	took := waitStatus(t, s, s.Traefiks, path, bearer(bob.token), http.StatusUnauthorized, 5*time.Second, "revoked session on the assertion route")
	for name, d := range took {
		if d > time.Second {
			t.Errorf("%s refused the revoked session after %s (want within 1s)", name, d)
		}
	}
	t.Logf("revocation on the assertion route, from the admin call: %s (admin call %s)", formatDurations(took), time.Since(start).Round(time.Millisecond))
	for _, tr := range s.Traefiks {
		code, body, _ := get(t, tr.URL+path, bearer(bob.token))
		if code != http.StatusUnauthorized || !strings.Contains(string(body), "authentication required") {
			t.Fatalf("%s: %d %.200s", tr.Spec.Name, code, body)
		}
	}
}

// showAssertion asks the echo backend to include the assertion it got and
// the claims it verified in its answer.
func showAssertion(h http.Header) http.Header {
	h.Set(echoserver.ShowAssertionHeader, "1")
	return h
}
