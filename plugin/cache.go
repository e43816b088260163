package edgepass

import (
	"sync"
	"sync/atomic"

	"github.com/edgepass/edgepass/plugin/edgestate"
	"github.com/edgepass/edgepass/plugin/token"
)

// decision is everything the request path needs for one verified token, computed
// once: immutable after it is stored (a state change stores a new decision).
type decision struct {
	claims *token.Claims
	keys   *token.KeySet // the set the signature was checked against
	// expires: not to be served as is from this unix second on — the
	// token's exp + skew, or earlier when its assertion needs renewing.
	expires int64
	// tokenExpires is the token's own exp + skew: refused from then on.
	tokenExpires int64
	// service: a service token (accepted as a bearer token only).
	service bool
	// idp: an IdP access token, verified with this IdP fact (bearer only).
	idp        *edgestate.IdPKeys
	subjectKey string
	version    int64 // edge-state version the decision was computed at
	// reason is why the request is refused (a policy reason code), "" when
	// admitted: only admitted decisions enter the line index.
	reason string
	// keep is set on the copies in the line index only: the keep memo when
	// the line was indexed (see ServeHTTP).
	keep map[string]bool
	// hdrNames[i] is set to hdrValues[i]; slices have len == cap so a backend
	// appending to them cannot write into the shared array.
	hdrNames  []string
	hdrValues [][]string
}

// boundedMap is a bounded map from raw token to a value. A sync.Map keeps
// the hit path to one call (Load) under Yaegi; when full, expired entries
// (by expiry) and a random eighth of the rest are dropped (no generics, no
// LRU bookkeeping on hits). tokenCache and assertCache are the two.
type boundedMap struct {
	m       sync.Map
	n       atomic.Int64
	max     int64
	evictMu sync.Mutex
	expiry  func(v any) int64 // the unix second an entry may go from
}

// init sets the map's capacity and how an entry's expiry is read: the one
// configuration tokenCache and assertCache differ in.
func (c *boundedMap) init(capacity int, expiry func(v any) int64) {
	c.max = int64(capacity)
	c.expiry = expiry
}

func (c *boundedMap) load(raw string) any {
	v, _ := c.m.Load(raw)
	return v
}

func (c *boundedMap) put(raw string, v any, now int64) {
	if c.n.Load() >= c.max {
		c.evict(now)
	}
	if _, loaded := c.m.Swap(raw, v); !loaded {
		c.n.Add(1)
	}
}

func (c *boundedMap) remove(raw string) {
	if _, loaded := c.m.LoadAndDelete(raw); loaded {
		c.n.Add(-1)
	}
}

func (c *boundedMap) len() int {
	return int(c.n.Load())
}

// evict drops expired entries and about an eighth of the others (map iteration
// order is random, so which ones is random).
func (c *boundedMap) evict(now int64) {
	c.evictMu.Lock()
	defer c.evictMu.Unlock()
	if c.n.Load() < c.max {
		return // another goroutine made room
	}
	i := 0
	c.m.Range(func(k, v any) bool {
		i++
		if c.expiry(v) <= now || i%8 == 0 || c.max < 8 {
			if _, loaded := c.m.LoadAndDelete(k); loaded {
				c.n.Add(-1)
			}
		}
		return true
	})
}

// tokenCache maps a raw token to its decision.
type tokenCache struct {
	boundedMap
}

func newTokenCache(size int) *tokenCache {
	c := &tokenCache{}
	c.init(size, decisionExpiry)
	return c
}

func decisionExpiry(v any) int64 { return v.(*decision).expires }

func (c *tokenCache) get(raw string) *decision {
	e, _ := c.load(raw).(*decision)
	return e
}
