package oidcflow

import (
	"fmt"
	"math"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"

	"github.com/edgepass/edgepass/daemon/internal/logsafe"
)

// rateLimitClients bounds the clients the limiter remembers (least
// recently seen first out), so its memory stays bounded however many
// addresses send requests; a client pushed out starts again with a full
// burst.
const rateLimitClients = 32768

// maxForwardedHops bounds the X-Forwarded-For entries examined.
const maxForwardedHops = 32

// rateLimiter is a token bucket per client and endpoint (/login and
// /callback each get LoginRateLimit per minute). The client is the peer's
// address, or, when the peer is a trusted proxy, the last X-Forwarded-For
// hop that is not itself a trusted proxy: a client cannot spoof its way out
// of the limit by writing the header itself. IPv6 clients count per /64,
// which one host usually holds whole.
type rateLimiter struct {
	perSec  float64 // 0 = no limit
	burst   float64
	trusted []netip.Prefix

	mu      sync.Mutex
	buckets *simplelru.LRU[string, *tokenBucket]
}

type tokenBucket struct {
	tokens float64
	at     time.Time
}

// newRateLimiter builds the limiter; trusted are CIDRs or addresses
// (trustedProxies).
func newRateLimiter(perMinute, burst int, trusted []string) (*rateLimiter, error) {
	l := &rateLimiter{perSec: float64(perMinute) / 60, burst: float64(max(burst, 1))}
	for _, t := range trusted {
		p, err := parsePrefix(t)
		if err != nil {
			return nil, fmt.Errorf("oidcflow: trustedProxies %q: not an IP address or CIDR (e.g. 127.0.0.1/32, 10.0.0.0/8)", t)
		}
		l.trusted = append(l.trusted, p)
	}
	buckets, err := simplelru.NewLRU[string, *tokenBucket](rateLimitClients, nil)
	if err != nil {
		return nil, fmt.Errorf("oidcflow: rate limiter: %w", err)
	}
	l.buckets = buckets
	return l, nil
}

func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return p, err
		}
		if p.Addr().Is4In6() {
			p = netip.PrefixFrom(p.Addr().Unmap(), max(p.Bits()-96, 0))
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// allow takes one token of client's bucket for endpoint; when there is
// none it reports how long until there is.
func (l *rateLimiter) allow(endpoint, client string, now time.Time) (bool, time.Duration) {
	if l.perSec <= 0 {
		return true, 0
	}
	key := endpoint + " " + client
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.buckets.Get(key)
	if !ok {
		b = &tokenBucket{tokens: l.burst, at: now}
		l.buckets.Add(key, b)
	} else if d := now.Sub(b.at); d > 0 {
		b.tokens = math.Min(l.burst, b.tokens+d.Seconds()*l.perSec)
		b.at = now
	}
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	return false, time.Duration((1 - b.tokens) / l.perSec * float64(time.Second))
}

// len is how many buckets are remembered.
func (l *rateLimiter) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buckets.Len()
}

func (l *rateLimiter) isTrusted(a netip.Addr) bool {
	for _, p := range l.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// client names the request's client for the limit (see rateLimiter).
func (l *rateLimiter) client(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return logsafe.Truncate(r.RemoteAddr, 64)
	}
	ip = ip.WithZone("").Unmap()
	if l.isTrusted(ip) {
		var hops []string
		for _, v := range r.Header.Values("X-Forwarded-For") {
			hops = append(hops, strings.Split(v, ",")...)
		}
		for i, n := len(hops)-1, 0; i >= 0 && n < maxForwardedHops; i, n = i-1, n+1 {
			hop, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
			if err != nil {
				break // not an address: keep the last hop that was
			}
			ip = hop.WithZone("").Unmap()
			if !l.isTrusted(ip) {
				break
			}
		}
	}
	if ip.Is4() {
		return ip.String()
	}
	return netip.PrefixFrom(ip, 64).Masked().String()
}

// rateLimited answers 429 when the request's client is over its limit for
// endpoint, and reports whether it did.
func (h *Handler) rateLimited(w http.ResponseWriter, r *http.Request, endpoint string) bool {
	if h.limiter.perSec <= 0 {
		return false
	}
	client := h.limiter.client(r)
	ok, wait := h.limiter.allow(endpoint, client, h.now())
	if ok {
		return false
	}
	secs := max(1, int(math.Ceil(wait.Seconds())))
	h.opts.Metrics.LoginFailed(ReasonRateLimited)
	if now := time.Now().UnixNano(); now-h.rateWarned.Load() > int64(time.Minute) {
		h.rateWarned.Store(now)
		h.log.Warn("login rate limit: answering 429 to a client over session.loginRateLimit (logged once a minute). "+
			"If many users share this address, raise session.loginRateLimit; if it is a proxy in front of edgepass, list it in trustedProxies",
			"client", client, "endpoint", endpoint, "perMinute", h.opts.LoginRateLimit, "burst", h.opts.LoginRateBurst)
	}
	w.Header().Set("Retry-After", strconv.Itoa(secs))
	h.render(w, http.StatusTooManyRequests, page{
		Title:   "Too many sign-in attempts",
		Message: fmt.Sprintf("edgepass received more sign-in requests from your network than it accepts in a minute. Please wait %d seconds, then try again.", secs),
	})
	return true
}
