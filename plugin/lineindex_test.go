package edgepass

import (
	"context"
	"crypto/ed25519"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/edgepass/edgepass/plugin/token"
)

// A cached token must stop working once it expires, with the real clock and
// nothing but the process-wide ticker to notice: ServeHTTP itself never reads
// the clock.
func TestCachedTokenExpiresWithRealClock(t *testing.T) {
	cfg := testConfig()
	cfg.ClockSkew = "0s"
	rec := &recorder{}
	h, err := New(context.Background(), rec, cfg, "expiry")
	if err != nil {
		t.Fatal(err)
	}
	c := testClaims()
	now := time.Now()
	c.IssuedAt = now.Unix() - 10
	c.Expiry = now.Unix() + 1
	raw := sign(t, c)
	get := func() int {
		r := withCookie(browserRequest("https://app.example.com/"), raw)
		r.Header.Set("Accept", "application/json")
		return serve(h.(*Middleware), r).Code
	}
	if code := get(); code != http.StatusTeapot {
		t.Fatalf("fresh token: status %d, want the backend's 418", code)
	}
	if code := get(); code != http.StatusTeapot {
		t.Fatalf("cached token: status %d, want 418", code)
	}
	deadline := time.Unix(c.Expiry, 0).Add(3 * TickInterval)
	for time.Now().Before(deadline) {
		if get() == http.StatusUnauthorized {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("an expired token was still served from the cache well past exp + one tick")
}

// The ticker alone drops an expired decision from an index nobody sends
// requests to, and leaves live ones where they are.
func TestTickerDropsExpiredDecisionsOnly(t *testing.T) {
	m, _, _ := newTest(t, func(c *Config) { c.ClockSkew = "0s" })
	m.clock = time.Now
	now := time.Now().Unix()
	short, long := testClaims(), testClaims()
	short.IssuedAt, short.Expiry = now-10, now+1
	long.IssuedAt, long.Expiry, long.SessionID = now-10, now+3600, "bG9uZy1saXZlZC1zZXNzaW9u"
	shortLine := "edgepass_session=" + sign(t, short)
	for _, raw := range []string{sign(t, short), sign(t, long)} {
		if code := serve(m, withCookie(browserRequest("https://app.example.com/"), raw)).Code; code != http.StatusTeapot {
			t.Fatalf("status %d", code)
		}
	}
	if m.lines.len() != 2 {
		t.Fatalf("line index holds %d lines, want 2", m.lines.len())
	}
	deadline := time.Unix(short.Expiry, 0).Add(3 * TickInterval)
	for m.lines.len() != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("line index holds %d lines %s past the short token's expiry, want 1", m.lines.len(), 3*TickInterval)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if v, _ := m.fast.Load("theme=dark; " + shortLine + "; other=1"); v != nil {
		t.Fatal("the ticker dropped the live decision and kept the expired one")
	}
}

// A change of the edge state drops at once, in the goroutine that applied
// it, exactly the decisions it can affect — that session's, that user's, or
// all for a key change — and keeps everyone else's fast path warm.
func TestStateChangeDropsOnlyAffectedDecisions(t *testing.T) {
	m, _, _, st := withState(t, nil)
	alice := testClaims()
	bob := testClaims()
	bob.Subject, bob.SessionID, bob.PreferredUsername = "sub-bob", "c2Vzc2lvbi1ib2ItMDAwMDAx", "bob"
	lineOf := map[string]string{}
	index := func() {
		for name, c := range map[string]*token.Claims{"alice": alice, "bob": bob} {
			r := withCookie(browserRequest("/"), sign(t, c))
			lineOf[name] = r.Header["Cookie"][0]
			if code := serve(m, r).Code; code != http.StatusTeapot {
				t.Fatalf("%s: status %d", name, code)
			}
		}
		if m.lines.len() != 2 {
			t.Fatalf("line index holds %d lines, want 2", m.lines.len())
		}
	}
	indexed := func(name string) bool { v, _ := m.fast.Load(lineOf[name]); return v != nil }
	exp := strconv.FormatInt(testNow.Unix()+60, 10)

	index()
	apply(t, st, "revoke.session.someone-else", "", `{"exp":`+exp+`}`)
	if !indexed("alice") || !indexed("bob") {
		t.Fatal("a revocation of another session dropped decisions")
	}
	apply(t, st, "revoke.session."+alice.SessionID, "", `{"exp":`+exp+`}`)
	if indexed("alice") || !indexed("bob") {
		t.Fatalf("revoking alice's session: alice indexed %v, bob indexed %v; want false, true", indexed("alice"), indexed("bob"))
	}
	applyGroups(t, st, bob.Subject, []string{"dev"}, bob.IssuedAt)
	if indexed("bob") {
		t.Fatal("a group change for bob left his decision in the index")
	}
	alice.SessionID = "c2Vzc2lvbi1hbGljZS0wMDAy"
	index()
	applyKeys(t, st, token.NewKeySet(token.Key{ID: "test", Public: testPriv.Public().(ed25519.PublicKey)}), 86400)
	if m.lines.len() != 0 {
		t.Fatal("a key change left decisions in the line index")
	}
	if serve(m, withCookie(browserRequest("/"), sign(t, alice))).Code != http.StatusTeapot || m.lines.len() != 1 {
		t.Fatal("the line was not indexed again after the change")
	}
}

// A decision computed before a change must not land in the index after the
// change emptied it (a slow request racing a revocation), and an index that
// refused one has still joined its group, so the next change empties it.
func TestLineIndexRefusesDecisionFromBeforeAChange(t *testing.T) {
	m, _, _, st := withState(t, nil)
	e := &decision{version: m.version.Load(), expires: testNow.Unix() + 3600}
	apply(t, st, "revoke.session.x", "", `{"exp":`+strconv.FormatInt(testNow.Unix()+60, 10)+`}`)
	m.lines.put("edgepass_session=x", e, testNow.Unix())
	if m.lines.len() != 0 {
		t.Fatal("a decision older than the edge state went into the line index")
	}
	if m.lines.group.size() != 1 {
		t.Fatal("an index that refused a put is not in its group")
	}
	e.version = m.version.Load()
	m.lines.put("edgepass_session=x", e, testNow.Unix())
	if m.lines.len() != 1 {
		t.Fatal("a current decision was refused")
	}
}

// A request that read a decision before the ticker dropped it must not put it
// back once it has expired.
func TestLineIndexRefusesExpiredDecision(t *testing.T) {
	m, _, _ := newTest(t, nil)
	e := &decision{version: m.version.Load(), expires: testNow.Unix()}
	m.lines.put("edgepass_session=x", e, testNow.Unix())
	if m.lines.len() != 0 {
		t.Fatal("an expired decision went into the line index")
	}
}

// Traefik drops middlewares on every configuration change: an index that
// stopped receiving inserts leaves its group (bounded), and joins again,
// still emptied on changes, when it is used again.
func TestIdleLineIndexLeavesGroupAndRejoins(t *testing.T) {
	m, _, clk, st := withState(t, nil)
	g := m.lines.group
	e := &decision{version: m.version.Load(), expires: testNow.Unix() + 3600}
	m.lines.put("a", e, testNow.Unix())
	if g.size() != 1 {
		t.Fatalf("group has %d members, want 1", g.size())
	}
	clk.set(testNow.Add(time.Second)) // a tick
	if g.size() != 1 || m.lines.len() != 1 {
		t.Fatal("a busy index left its group or lost a live decision")
	}
	later := testNow.Add(idleIndex + time.Second)
	clk.set(later)
	if g.size() != 0 || m.lines.len() != 0 {
		t.Fatalf("idle index: group has %d members, index %d lines", g.size(), m.lines.len())
	}
	m.lines.put("a", e, later.Unix())
	if g.size() != 1 || m.lines.len() != 1 {
		t.Fatal("a used index did not join again")
	}
	apply(t, st, "revoke.session.x", "", `{"exp":`+strconv.FormatInt(later.Unix()+60, 10)+`}`)
	if m.lines.len() != 0 {
		t.Fatal("a rejoined index is not emptied on changes")
	}
}

func TestLineIndexIsBounded(t *testing.T) {
	m, _, _ := newTest(t, func(c *Config) { c.CacheSize = 16 })
	e := &decision{version: m.version.Load(), expires: testNow.Unix() + 3600}
	for i := 0; i < 100; i++ {
		m.lines.put("line-"+strconv.Itoa(i), e, testNow.Unix())
		if n := m.lines.len(); n > 16 {
			t.Fatalf("line index grew to %d, limit 16", n)
		}
	}
}

// Attack: a signed-in client varies its other cookies to fill the index with
// distinct lines of the largest size the index accepts.
func TestLineIndexIsBoundedInBytes(t *testing.T) {
	m, _, clk := newTest(t, func(c *Config) { c.CacheSize = 1_000_000 })
	e := &decision{version: m.version.Load(), expires: testNow.Unix() + 3600}
	pad := strings.Repeat("x", maxLineKey-16)
	for i := 0; i < 2*maxIndexBytes/maxLineKey; i++ {
		m.lines.put(strconv.Itoa(i)+pad, e, testNow.Unix())
		m.lines.mu.Lock()
		b := m.lines.bytes
		m.lines.mu.Unlock()
		if b > maxIndexBytes {
			t.Fatalf("line index holds %d bytes, limit %d", b, maxIndexBytes)
		}
	}
	checkBytes := func(when string) {
		t.Helper()
		held := 0
		m.lines.mu.Lock()
		m.lines.m.Range(func(k, _ any) bool {
			held += len(k.(string))
			return true
		})
		counted := m.lines.bytes
		m.lines.mu.Unlock()
		if held != counted {
			t.Fatalf("%s: index holds %d bytes of lines but counts %d", when, held, counted)
		}
	}
	checkBytes("after puts")
	m.lines.remove(strconv.Itoa(2*maxIndexBytes/maxLineKey-1) + pad)
	checkBytes("after remove")
	old := &decision{version: m.version.Load(), expires: testNow.Unix() + 1}
	m.lines.put("short-lived", old, testNow.Unix())
	clk.set(testNow.Add(2 * time.Second))
	checkBytes("after expiry")
	if v, _ := m.lines.m.Load("short-lived"); v != nil || m.lines.len() == 0 {
		t.Fatal("expiry kept the expired line or dropped live ones")
	}
}
