package edgepass

import (
	"sync"
	"sync/atomic"
	"time"
)

// The request path checks one number per request: the version counter of the
// edge state its cached decision was computed at. Time passing can change a
// decision too (a token expires), so one process-wide goroutine bumps every
// counter in use once a second. A cached entry is then re-checked against the
// clock at most once a second, and ServeHTTP needs no clock call: under Yaegi
// each call into compiled code is a reflection round trip.

// TickInterval bounds how long past its expiry (exp + clockSkew) a token can
// still be served from the cache.
const TickInterval = time.Second

var (
	// localVersion is the counter of middlewares without NATS (no edge state):
	// shared, so registering it is bounded however often Traefik calls New.
	localVersion atomic.Int64

	tickMu      sync.Mutex
	tickTargets = map[*atomic.Int64]bool{}
	ticking     bool
)

// tickEverySecond adds c to the counters bumped every TickInterval; it starts
// the process-wide ticker on first use. Counters are the edge states' (one per
// distinct NATS setting) and localVersion, so the set stays small.
func tickEverySecond(c *atomic.Int64) {
	tickMu.Lock()
	defer tickMu.Unlock()
	tickTargets[c] = true
	if !ticking {
		ticking = true
		go tick()
	}
}

func tick() {
	t := time.NewTicker(TickInterval)
	defer t.Stop()
	for range t.C {
		tickMu.Lock()
		for c := range tickTargets {
			c.Add(1)
		}
		tickMu.Unlock()
	}
}
