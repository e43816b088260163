package edgepass

import (
	"crypto/ed25519"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgepass/edgepass/plugin/assertion"
	"github.com/edgepass/edgepass/plugin/edgestate"
	"github.com/edgepass/edgepass/plugin/policy"
	"github.com/edgepass/edgepass/plugin/token"
)

const testAssertAud = "https://app.example.com"

var testAssertKey = ed25519.NewKeyFromSeed([]byte("edgepass-test-assertion-key-seed"))

// fakeMinter plays the daemon: it verifies nothing itself (the edge's
// decision is what these tests are about) and signs with testAssertKey,
// applying the state's group override like the daemon does.
type fakeMinter struct {
	calls  atomic.Int64
	fail   atomic.Value // string: a reason to answer with instead
	state  *edgestate.State
	gate   chan struct{} // when set, each mint waits for it
	mu     sync.Mutex
	issued []string
}

func (f *fakeMinter) mint(raw, audience string, now int64) *minted {
	f.calls.Add(1)
	if f.gate != nil {
		<-f.gate
	}
	if r, _ := f.fail.Load().(string); r != "" {
		return &minted{reason: r, at: now}
	}
	c, err := (&token.Verifier{}).Verify(raw, token.NewKeySet(token.Key{ID: "test", Public: testPriv.Public().(ed25519.PublicKey)}), time.Unix(now, 0))
	if err != nil {
		return &minted{reason: policy.BadToken, at: now}
	}
	groups := c.Groups
	if f.state != nil {
		if g, ok := f.state.GroupsOverride(token.SubjectKey(c.Subject), c.IssuedAt); ok {
			groups = g
		}
	}
	exp := now + assertion.DefaultLifetime
	if exp > c.Expiry {
		exp = c.Expiry
	}
	a, err := assertion.Sign(&assertion.Claims{Issuer: c.Issuer, Audience: audience, Subject: c.Subject, User: c.User(),
		Groups: groups, IssuedAt: now, Expiry: exp, SessionHash: assertion.HashSessionID(c.SessionID), Kind: assertion.KindSession}, testAssertKey)
	if err != nil {
		panic(err)
	}
	f.mu.Lock()
	f.issued = append(f.issued, a)
	f.mu.Unlock()
	return &minted{assertion: a, exp: exp, groups: strings.Join(groups, "\x00"), at: now}
}

// withAssertions is a middleware with edge state and assertionHeader on,
// minting through a fakeMinter (compile requires nats.urls for the real one).
func withAssertions(t *testing.T, edit func(*Config)) (*Middleware, *recorder, *clock, *edgestate.State, *fakeMinter) {
	t.Helper()
	m, rec, clk, st := withState(t, edit)
	m.s.assertHeader = assertion.DefaultHeader
	m.s.assertAudience = testAssertAud
	f := &fakeMinter{state: st}
	m.minter = f
	m.assertions = newAssertCache(m.s.cacheSize)
	return m, rec, clk, st, f
}

// verifyAssertion checks the assertion the backend got as a backend would.
func verifyAssertion(t *testing.T, h http.Header, at time.Time) *assertion.Claims {
	t.Helper()
	vals := h.Values(assertion.DefaultHeader)
	if len(vals) != 1 {
		t.Fatalf("backend got %d assertion headers", len(vals))
	}
	pub := testAssertKey.Public().(ed25519.PublicKey)
	c, err := assertion.Verify(vals[0], assertion.NewKeys(assertion.Key{ID: assertion.KeyID(pub), Public: pub}),
		assertion.Options{Issuer: "https://auth.example.com", Audience: testAssertAud}, at)
	if err != nil {
		t.Fatalf("backend cannot verify the assertion: %v", err)
	}
	return c
}

func TestAssertionSentOnceMintedAndServedFromTheFastPath(t *testing.T) {
	m, rec, _, _, f := withAssertions(t, nil)
	raw := sign(t, testClaims())
	for i := 0; i < 50; i++ {
		if rw := serve(m, withCookie(browserRequest("/"), raw)); rw.Code != http.StatusTeapot {
			t.Fatalf("request %d: %d %s", i, rw.Code, rw.Body)
		}
	}
	c := verifyAssertion(t, rec.header, testNow)
	if c.Subject != "sub-alice" || c.User != "alice" || strings.Join(c.Groups, ",") != "dev,ops" || c.Audience != testAssertAud {
		t.Fatalf("assertion claims %+v", c)
	}
	if got := f.calls.Load(); got != 1 {
		t.Fatalf("%d mints for one token, want 1", got)
	}
	// The line is in the fast-path index, assertion included.
	if m.lines.len() != 1 {
		t.Fatalf("line index holds %d lines", m.lines.len())
	}
	if rec.header.Get("X-Auth-User") != "alice" {
		t.Fatalf("identity headers still set: %v", rec.header)
	}
}

// Attack: a client sends its own assertion header (with a captured or forged
// assertion); the backend must see only the one edgepass minted.
func TestClientSuppliedAssertionHeaderNeverReachesBackend(t *testing.T) {
	m, rec, _, _, _ := withAssertions(t, nil)
	raw := sign(t, testClaims())
	for _, name := range []string{"X-Edgepass-Assertion", "x-edgepass-assertion", "X_Edgepass_Assertion"} {
		r := withCookie(browserRequest("/"), raw)
		r.Header[name] = []string{"forged.assertion.value"}
		if serve(m, r).Code != http.StatusTeapot {
			t.Fatal("refused")
		}
		for k, v := range rec.header {
			if policy.NormalizeHeader(k) == "x-edgepass-assertion" && (len(v) != 1 || v[0] == "forged.assertion.value") {
				t.Fatalf("%s: backend got %s: %v", name, k, v)
			}
		}
		verifyAssertion(t, rec.header, testNow)
	}
	// Public paths and refusals never carry one.
	r := browserRequest("/")
	r.Header.Set(assertion.DefaultHeader, "forged")
	if rw := serve(m, r); rw.Code != http.StatusFound || rw.Header().Get(assertion.DefaultHeader) != "" {
		t.Fatalf("anonymous request: %d", rw.Code)
	}
}

// Attack: keep using a logged-out session on an assertion route, hoping the
// cached assertion keeps coming — the revocation must end it at once.
func TestRevokedSessionStopsAssertions(t *testing.T) {
	m, rec, _, st, f := withAssertions(t, nil)
	c := testClaims()
	raw := sign(t, c)
	if serve(m, withCookie(browserRequest("/"), raw)).Code != http.StatusTeapot {
		t.Fatal("refused")
	}
	if m.assertions.len() != 1 {
		t.Fatal("no assertion cached")
	}
	apply(t, st, "revoke.session."+c.SessionID, "", `{"exp":`+strconv.FormatInt(c.Expiry, 10)+`}`)
	before := rec.called
	rw := serve(m, withCookie(browserRequest("/"), raw))
	if rw.Code != http.StatusFound || rec.called != before {
		t.Fatalf("revoked session: %d, backend called %d", rw.Code, rec.called-before)
	}
	if m.assertions.len() != 0 {
		t.Fatal("the revoked session's assertion stays cached")
	}
	if f.calls.Load() != 1 {
		t.Fatal("the edge asked for an assertion for a revoked session")
	}
	// A user revocation too, for another session of the user.
	c2 := testClaims()
	c2.SessionID = "another-session-000000000"
	raw2 := sign(t, c2)
	if serve(m, withCookie(browserRequest("/"), raw2)).Code != http.StatusTeapot {
		t.Fatal("other session refused")
	}
	apply(t, st, "revoke.user."+token.SubjectKey(c2.Subject), "", `{"before":`+strconv.FormatInt(c2.IssuedAt, 10)+`}`)
	if rw := serve(m, withCookie(browserRequest("/"), raw2)); rw.Code != http.StatusFound || m.assertions.len() != 0 {
		t.Fatalf("revoked user: %d, %d cached", rw.Code, m.assertions.len())
	}
}

// The daemon refuses to mint for a session it knows revoked (it may be ahead
// of this edge): the edge refuses the request like a revocation.
func TestDaemonRefusalIsARefusal(t *testing.T) {
	m, rec, _, _, f := withAssertions(t, nil)
	f.fail.Store(policy.SessionRevoked)
	raw := sign(t, testClaims())
	r := httptest.NewRequest(http.MethodGet, "/api", nil)
	r.Header.Set("Cookie", "edgepass_session="+raw)
	rw := serve(m, r)
	if rw.Code != http.StatusUnauthorized || rec.called != 0 || !strings.Contains(rw.Header().Get("WWW-Authenticate"), "session_revoked") {
		t.Fatalf("%d %v", rw.Code, rw.Header())
	}
}

func TestAssertionUnavailableIs503AndRetriedSparingly(t *testing.T) {
	m, rec, clk, _, f := withAssertions(t, nil)
	f.fail.Store(policy.AssertionUnavailable)
	raw := sign(t, testClaims())
	for i := 0; i < 5; i++ {
		rw := serve(m, withCookie(browserRequest("/"), raw))
		if rw.Code != http.StatusServiceUnavailable || !strings.Contains(rw.Body.String(), `"reason":"assertion_unavailable"`) || rec.called != 0 {
			t.Fatalf("%d %s", rw.Code, rw.Body)
		}
	}
	if f.calls.Load() != 1 {
		t.Fatalf("%d requests to the daemon within a second, want 1", f.calls.Load())
	}
	f.fail.Store("")
	clk.set(testNow.Add(2 * time.Second))
	if rw := serve(m, withCookie(browserRequest("/"), raw)); rw.Code != http.StatusTeapot {
		t.Fatalf("daemon back: %d", rw.Code)
	}
	verifyAssertion(t, rec.header, clk.now())
}

// An assertion is renewed in the background before it gets short, and one
// with less than assertReuse seconds left is never sent.
func TestAssertionRenewedBeforeExpiry(t *testing.T) {
	m, rec, clk, _, f := withAssertions(t, nil)
	raw := sign(t, testClaims())
	serve(m, withCookie(browserRequest("/"), raw))
	first := rec.header.Get(assertion.DefaultHeader)
	// In the renewal window: served with the current one, renewed behind.
	clk.set(testNow.Add((assertion.DefaultLifetime - assertRenew + 1) * time.Second))
	if serve(m, withCookie(browserRequest("/"), raw)).Code != http.StatusTeapot {
		t.Fatal("refused in the renewal window")
	}
	deadline := time.Now().Add(5 * time.Second)
	for f.calls.Load() < 2 || m.assertions.get(raw).assertion == first {
		if time.Now().After(deadline) {
			t.Fatal("no renewal")
		}
		time.Sleep(time.Millisecond)
	}
	serve(m, withCookie(browserRequest("/"), raw))
	second := rec.header.Get(assertion.DefaultHeader)
	if second == first {
		t.Fatal("the renewed assertion is not sent")
	}
	verifyAssertion(t, rec.header, clk.now())
	// The daemon goes away: the assertion is sent until assertReuse before
	// its exp, never after.
	f.fail.Store(policy.AssertionUnavailable)
	exp := verifyAssertion(t, rec.header, clk.now()).Expiry
	clk.set(time.Unix(exp-assertReuse-1, 0))
	if serve(m, withCookie(browserRequest("/"), raw)).Code != http.StatusTeapot {
		t.Fatal("refused while the assertion is still good")
	}
	clk.set(time.Unix(exp-assertReuse+1, 0))
	if rw := serve(m, withCookie(browserRequest("/"), raw)); rw.Code != http.StatusServiceUnavailable {
		t.Fatalf("an assertion about to expire was sent: %d", rw.Code)
	}
}

// A group change at the edge asks for a new assertion with the new groups.
func TestAssertionFollowsGroupChanges(t *testing.T) {
	m, rec, _, st, f := withAssertions(t, nil)
	c := testClaims()
	raw := sign(t, c)
	serve(m, withCookie(browserRequest("/"), raw))
	applyGroups(t, st, c.Subject, []string{"ops", "auditors"}, c.IssuedAt)
	if serve(m, withCookie(browserRequest("/"), raw)).Code != http.StatusTeapot {
		t.Fatal("refused")
	}
	if got := strings.Join(verifyAssertion(t, rec.header, testNow).Groups, ","); got != "ops,auditors" || f.calls.Load() != 2 {
		t.Fatalf("groups %q after %d mints", got, f.calls.Load())
	}
}

// Many requests of a new token at once ask the daemon once.
func TestConcurrentFirstRequestsMintOnce(t *testing.T) {
	m, _, _, _, f := withAssertions(t, nil)
	m.next = http.HandlerFunc(func(rw http.ResponseWriter, _ *http.Request) { rw.WriteHeader(http.StatusTeapot) })
	f.gate = make(chan struct{})
	raw := sign(t, testClaims())
	var wg sync.WaitGroup
	codes := make(chan int, 20)
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rw := httptest.NewRecorder()
			m.ServeHTTP(rw, withCookie(browserRequest("/"), raw))
			codes <- rw.Code
		}()
	}
	time.Sleep(50 * time.Millisecond)
	close(f.gate)
	wg.Wait()
	close(codes)
	for c := range codes {
		if c != http.StatusTeapot {
			t.Fatalf("status %d", c)
		}
	}
	if f.calls.Load() != 1 {
		t.Fatalf("%d mints", f.calls.Load())
	}
}

func TestAssertionSettings(t *testing.T) {
	checkRefused(t, []refusedSetting{
		{"audience without header", func(c *Config) { c.AssertionAudience = "x" }, "assertionAudience"},
		{"header without audience", func(c *Config) { withNATS(c); c.AssertionHeader = "X-Edgepass-Assertion" }, "assertionAudience"},
		{"session audience", func(c *Config) { withNATS(c); c.AssertionHeader = "X-A"; c.AssertionAudience = "edgepass" }, "audience of edgepass's own tokens"},
		{"service audience", func(c *Config) { withNATS(c); c.AssertionHeader = "X-A"; c.AssertionAudience = "edgepass-service" }, "audience of edgepass's own tokens"},
		{"configured audience", func(c *Config) {
			withNATS(c)
			c.Audience = "my-sessions"
			c.AssertionHeader = "X-A"
			c.AssertionAudience = "my-sessions"
		}, "audience of edgepass's own tokens"},
		{"no nats", func(c *Config) { c.AssertionHeader = "X-A"; c.AssertionAudience = "app" }, "needs nats.urls"},
		{"reserved header", func(c *Config) { withNATS(c); c.AssertionHeader = "Authorization"; c.AssertionAudience = "app" }, "cannot carry"},
		{"identity header", func(c *Config) { withNATS(c); c.AssertionHeader = "x-auth-user"; c.AssertionAudience = "app" }, "already an identity header"},
		{"bad audience", func(c *Config) { withNATS(c); c.AssertionHeader = "X-A"; c.AssertionAudience = "a b" }, "no spaces"},
	})
	cfg := testConfig()
	withNATS(cfg)
	cfg.AssertionHeader = "x-identity-assertion"
	cfg.AssertionAudience = testAssertAud
	s, err := compile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if s.assertHeader != "X-Identity-Assertion" || !s.pol.Strips("X_Identity_Assertion") {
		t.Fatalf("header %q, stripped from clients: %v", s.assertHeader, s.pol.Strips("X_Identity_Assertion"))
	}
}
