package oidcflow

import (
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"
)

// hit sends one request to the handler as if from remote (host:port), with
// an X-Forwarded-For header when xff is not empty.
func (e *env) hit(path, remote, xff string) *httptest.ResponseRecorder {
	req := httptest.NewRequest("GET", e.srv.URL+path, nil)
	req.RemoteAddr = remote
	if xff != "" {
		req.Header.Set("X-Forwarded-For", xff)
	}
	rec := httptest.NewRecorder()
	e.mux.ServeHTTP(rec, req)
	return rec
}

// A client over its limit gets a clear page with 429 and Retry-After, for
// /login and /callback alike, and is let in again once the wait is over.
func TestLoginRateLimitAnswers429WithRetryAfter(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.LoginRateLimit, o.LoginRateBurst = 6, 2 })
	now := time.Now()
	e.h.now = func() time.Time { return now }
	for _, path := range []string{"/login", "/callback?state=x&code=y"} {
		for i := 0; i < 2; i++ {
			if rec := e.hit(path, "192.0.2.1:5000", ""); rec.Code == http.StatusTooManyRequests {
				t.Fatalf("%s request %d within the burst: 429", path, i+1)
			}
		}
		rec := e.hit(path, "192.0.2.1:5001", "")
		if rec.Code != http.StatusTooManyRequests {
			t.Fatalf("%s over the burst: status %d, want 429", path, rec.Code)
		}
		secs, err := strconv.Atoi(rec.Header().Get("Retry-After"))
		if err != nil || secs < 1 || secs > 10 {
			t.Fatalf("%s: Retry-After %q, want the seconds until the next request is allowed (1..10 at 6/min)", path, rec.Header().Get("Retry-After"))
		}
		body := rec.Body.String()
		if !strings.Contains(rec.Header().Get("Content-Type"), "text/html") || !strings.Contains(body, "Too many sign-in attempts") ||
			!strings.Contains(body, "wait") {
			t.Fatalf("%s: 429 page %q; want a page saying what happened and to wait", path, body)
		}
	}
	if n := e.metrics.failure(ReasonRateLimited); n != 2 {
		t.Errorf("rate-limited requests counted %d times, want 2", n)
	}
	now = now.Add(10 * time.Second)
	if rec := e.hit("/login", "192.0.2.1:5002", ""); rec.Code != http.StatusFound {
		t.Fatalf("after Retry-After: status %d, want 302", rec.Code)
	}
}

// One client hammering /login does not lock anyone else out.
func TestRateLimitLeavesOtherClientsAlone(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.LoginRateLimit, o.LoginRateBurst = 6, 2 })
	for i := 0; i < 50; i++ {
		e.hit("/login", "192.0.2.1:5000", "")
	}
	for _, remote := range []string{"192.0.2.2:5000", "[2001:db8:1::1]:443"} {
		if rec := e.hit("/login", remote, ""); rec.Code != http.StatusFound {
			t.Fatalf("client %s: status %d, want 302", remote, rec.Code)
		}
	}
	// A whole browser flow from another client still completes.
	if resp := e.login(t, browser(t), ""); resp.StatusCode != http.StatusFound {
		t.Fatalf("another client's login: status %d", resp.StatusCode)
	}
}

// Attack: a client spoofs X-Forwarded-For to get a fresh limit with every
// request. Only a trusted proxy's header counts, and of it only the hop the
// proxy itself added.
func TestForwardedForIgnoredFromUntrustedPeer(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.LoginRateLimit, o.LoginRateBurst = 6, 2 })
	spoof := []string{"198.51.100.1", "198.51.100.2", "198.51.100.3"}
	codes := []int{}
	for _, xff := range spoof {
		codes = append(codes, e.hit("/login", "192.0.2.9:5000", xff).Code)
	}
	if codes[2] != http.StatusTooManyRequests {
		t.Fatalf("untrusted peer with changing X-Forwarded-For: statuses %v, want the third refused", codes)
	}
	// Behind Traefik (loopback, trusted by default) the last hop names the
	// client; what the client wrote before it does not.
	for i, xff := range []string{"203.0.113.7", "1.1.1.1, 203.0.113.7"} {
		if rec := e.hit("/login", "127.0.0.1:6000", xff); rec.Code != http.StatusFound {
			t.Fatalf("request %d through the proxy: status %d", i, rec.Code)
		}
	}
	if rec := e.hit("/login", "127.0.0.1:6000", "2.2.2.2, 203.0.113.7"); rec.Code != http.StatusTooManyRequests {
		t.Fatalf("client 203.0.113.7 spoofing an earlier hop: status %d, want 429", rec.Code)
	}
	if rec := e.hit("/login", "127.0.0.1:6000", "203.0.113.8"); rec.Code != http.StatusFound {
		t.Fatalf("another client through the proxy: status %d, want 302", rec.Code)
	}
}

func TestClientAddress(t *testing.T) {
	trusted := []string{"127.0.0.0/8", "::1/128", "10.0.0.0/8"}
	cases := []struct {
		name, remote, xff, want string
	}{
		{"direct client", "192.0.2.1:1234", "", "192.0.2.1"},
		{"direct client, XFF ignored", "192.0.2.1:1234", "198.51.100.1", "192.0.2.1"},
		{"trusted proxy", "127.0.0.1:1234", "198.51.100.1", "198.51.100.1"},
		{"trusted proxy, last hop", "127.0.0.1:1234", "6.6.6.6, 198.51.100.1", "198.51.100.1"},
		{"chain of trusted proxies", "127.0.0.1:1234", "6.6.6.6, 198.51.100.1, 10.1.2.3", "198.51.100.1"},
		{"trusted proxy without XFF", "127.0.0.1:1234", "", "127.0.0.1"},
		{"trusted proxy, garbage XFF", "127.0.0.1:1234", "unknown", "127.0.0.1"},
		{"IPv6 grouped by /64", "[2001:db8:1:2:aaaa::1]:443", "", "2001:db8:1:2::/64"},
		{"IPv4-mapped", "[::ffff:192.0.2.7]:443", "", "192.0.2.7"},
		{"IPv6 loopback proxy", "[::1]:443", "2001:db8::5", "2001:db8::/64"},
		{"no port", "192.0.2.1", "", "192.0.2.1"},
	}
	l, err := newRateLimiter(60, 20, trusted)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/login", nil)
			r.RemoteAddr = c.remote
			if c.xff != "" {
				r.Header.Set("X-Forwarded-For", c.xff)
			}
			if got := l.client(r); got != c.want {
				t.Errorf("client = %q, want %q", got, c.want)
			}
		})
	}
	for _, bad := range [][]string{{"10.0.0.0/33"}, {"not-an-ip"}, {""}} {
		if _, err := newRateLimiter(60, 20, bad); err == nil || !strings.Contains(err.Error(), "trustedProxies") {
			t.Errorf("trusted proxies %q: err %v, want one naming trustedProxies", bad, err)
		}
	}
}

// The limiter's memory is bounded whatever the number of clients.
func TestRateLimiterMemoryIsBounded(t *testing.T) {
	l, err := newRateLimiter(60, 20, nil)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for i := 0; i < rateLimitClients+1000; i++ {
		l.allow("/login", "c"+strconv.Itoa(i), now)
	}
	if n := l.len(); n > rateLimitClients {
		t.Fatalf("%d clients remembered, bound %d", n, rateLimitClients)
	}
}
