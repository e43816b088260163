package assertion

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edgepass/edgepass/plugin/token"
)

// Verifier verifies assertions with the keys of the daemon's JWKS, fetched
// over HTTP and cached: for backends written in Go.
//
//	v, err := assertion.NewVerifier(assertion.VerifierOptions{
//		JWKSURL:  "https://auth.example.com/.well-known/jwks.json",
//		Issuer:   "https://auth.example.com",
//		Audience: "https://billing.example.com",
//	})
//	http.Handle("/", v.Middleware("", app)) // 401 without a valid assertion
//	// in app: c, _ := assertion.FromContext(r.Context())
type Verifier struct {
	o VerifierOptions

	// verified caches assertions that verified, by raw value, until their
	// exp: an edge sends the same assertion for most of a minute, so a
	// backend checks its signature once, not on every request.
	verified sync.Map // raw -> *Claims
	nCached  atomic.Int64

	mu        sync.Mutex
	keys      *Keys
	fetchedAt time.Time
	lastTry   time.Time
	lastErr   error
}

// VerifierOptions configure a Verifier.
type VerifierOptions struct {
	// JWKSURL is the daemon's <publicURL>/.well-known/jwks.json.
	JWKSURL string
	// Issuer is the daemon's publicURL; Audience is this backend's (the
	// middleware's assertionAudience). Both required.
	Issuer   string
	Audience string
	// Skew tolerates clock differences (default 5s).
	Skew time.Duration
	// Client fetches the JWKS (default: a client with a 10s timeout).
	Client *http.Client
	// Refresh is how long fetched keys are used before they are fetched
	// again (default 5m). An unknown kid fetches at once, at most once per
	// MinRefetch (default 10s), so forged kids cannot hammer the daemon.
	Refresh    time.Duration
	MinRefetch time.Duration
	// Now is the clock (tests); default time.Now.
	Now func() time.Time
	// CacheSize bounds the verified assertions remembered (default 10000;
	// negative: none).
	CacheSize int
}

// NewVerifier checks the options; nothing is fetched until the first Verify.
func NewVerifier(o VerifierOptions) (*Verifier, error) {
	if o.JWKSURL == "" || o.Issuer == "" {
		return nil, fmt.Errorf("%w: JWKSURL and Issuer are required", ErrConfig)
	}
	if err := checkAudience(o.Audience); err != nil {
		return nil, err
	}
	if o.Skew == 0 {
		o.Skew = 5 * time.Second
	}
	if o.Client == nil {
		o.Client = &http.Client{Timeout: 10 * time.Second}
	}
	if o.Refresh <= 0 {
		o.Refresh = 5 * time.Minute
	}
	if o.MinRefetch <= 0 {
		o.MinRefetch = 10 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.CacheSize == 0 {
		o.CacheSize = 10000
	}
	return &Verifier{o: o}, nil
}

// Verify checks raw against the daemon's current assertion keys. The
// claims returned are shared with later calls for the same assertion: do
// not modify them.
func (v *Verifier) Verify(ctx context.Context, raw string) (*Claims, error) {
	if c, ok := v.verified.Load(raw); ok {
		claims := c.(*Claims)
		if v.o.Now().Unix() < claims.Expiry+int64(v.o.Skew/time.Second) {
			return claims, nil
		}
		v.forget(raw)
	}
	c, err := v.verify(ctx, raw)
	if err == nil && v.o.CacheSize > 0 {
		if v.nCached.Load() >= int64(v.o.CacheSize) {
			v.prune()
		}
		if _, loaded := v.verified.LoadOrStore(raw, c); !loaded {
			v.nCached.Add(1)
		}
	}
	return c, err
}

func (v *Verifier) forget(raw string) {
	if _, loaded := v.verified.LoadAndDelete(raw); loaded {
		v.nCached.Add(-1)
	}
}

// prune drops expired assertions and, when that is not enough, half the rest.
func (v *Verifier) prune() {
	now := v.o.Now().Unix()
	i := 0
	v.verified.Range(func(k, c any) bool {
		i++
		if c.(*Claims).Expiry <= now || i%2 == 0 {
			v.forget(k.(string))
		}
		return true
	})
}

func (v *Verifier) verify(ctx context.Context, raw string) (*Claims, error) {
	keys, err := v.currentKeys(ctx, "")
	if err != nil {
		return nil, err
	}
	opts := Options{Issuer: v.o.Issuer, Audience: v.o.Audience, Skew: v.o.Skew}
	c, err := Verify(raw, keys, opts, v.o.Now())
	if errors.Is(err, ErrUnknownKey) {
		// A key rotated in since the last fetch: fetch once more.
		if keys, ferr := v.currentKeys(ctx, kidOf(raw)); ferr == nil {
			c, err = Verify(raw, keys, opts, v.o.Now())
		}
	}
	return c, err
}

// currentKeys returns the cached keys, fetching when they are old or do
// not hold want (rate-limited).
func (v *Verifier) currentKeys(ctx context.Context, want string) (*Keys, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	now := v.o.Now()
	stale := v.keys == nil || now.Sub(v.fetchedAt) >= v.o.Refresh || (want != "" && !v.keys.Has(want))
	if !stale {
		return v.keys, nil
	}
	if !v.lastTry.IsZero() && now.Sub(v.lastTry) < v.o.MinRefetch {
		if v.keys != nil {
			return v.keys, nil
		}
		return nil, v.lastErr
	}
	v.lastTry = now
	keys, err := v.fetch(ctx)
	if err != nil {
		v.lastErr = err
		if v.keys != nil {
			return v.keys, nil // keep verifying with what we have
		}
		return nil, err
	}
	// One by one: yaegi panics on nil in a tuple assignment.
	v.keys = keys
	v.fetchedAt = now
	v.lastErr = nil
	return keys, nil
}

func (v *Verifier) fetch(ctx context.Context) (*Keys, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, v.o.JWKSURL, nil)
	if err != nil {
		return nil, fmt.Errorf("assertion: jwks: %w", err)
	}
	resp, err := v.o.Client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("assertion: fetch jwks: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("assertion: fetch jwks: %s", resp.Status)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("assertion: fetch jwks: %w", err)
	}
	return ParseJWKS(data)
}

// kidOf is the kid of a raw assertion's header, unverified ("" if unreadable).
func kidOf(raw string) string {
	if len(raw) > MaxSize || strings.Count(raw, ".") != 2 {
		return ""
	}
	_, kid, _, _, _, err := token.OpenJWS(raw)
	if err != nil {
		return ""
	}
	return kid
}

type ctxKey struct{}

// FromContext returns the claims Middleware verified for this request.
func FromContext(ctx context.Context) (*Claims, bool) {
	c, ok := ctx.Value(ctxKey{}).(*Claims)
	return c, ok
}

// NewContext returns ctx carrying c (what Middleware does).
func NewContext(ctx context.Context, c *Claims) context.Context {
	return context.WithValue(ctx, ctxKey{}, c)
}

// Middleware verifies the assertion in header (DefaultHeader when empty)
// and passes the request on with the claims in its context (FromContext);
// a request without a valid assertion gets 401 and never reaches next.
func (v *Verifier) Middleware(header string, next http.Handler) http.Handler {
	if header == "" {
		header = DefaultHeader
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		vals := r.Header.Values(header)
		if len(vals) != 1 {
			http.Error(w, "missing edgepass assertion", http.StatusUnauthorized)
			return
		}
		c, err := v.Verify(r.Context(), vals[0])
		if err != nil {
			http.Error(w, "invalid edgepass assertion", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r.WithContext(NewContext(r.Context(), c)))
	})
}
