package edgepass

import (
	"context"
	"net/http"
	"testing"
	"time"
)

// A cached token must stop working once it expires, with the real clock and
// nothing but the process-wide ticker to notice: the request path itself
// never reads the clock.
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

func TestTickerBumpsEveryRegisteredCounter(t *testing.T) {
	m, _, _ := newTest(t, nil)
	serve(m, browserRequest("https://app.example.com/")) // the first slow request registers the counter
	before := m.version.Load()
	time.Sleep(TickInterval + TickInterval/2)
	if after := m.version.Load(); after == before {
		t.Fatalf("version %d unchanged after %s: the ticker does not run", before, TickInterval+TickInterval/2)
	}
}
