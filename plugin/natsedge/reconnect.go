package natsedge

import (
	"errors"
	"strings"
	"time"
)

// The reconnect loop: which server to try next, how long to wait, and the
// cluster peers learned from the servers' INFO. It runs in the watcher's
// run goroutine, one link (link.go) per established connection.

// run connects, follows the bucket, and reconnects until Close. It walks
// the server list round-robin: a failed server is followed at once by the
// next, and only a whole round of failures waits (with backoff). After a
// lost connection the next server is tried at once, so an edge of a cluster
// is back on a surviving node within a dial timeout.
func (w *Watcher) run() {
	defer close(w.done)
	attempt := 0
	failsInRow := 0
	for {
		if w.ctx.Err() != nil {
			return
		}
		list := w.pool.all()
		u := list[w.pool.next%len(list)]
		w.pool.next = (w.pool.next + 1) % len(list)
		c, err := w.s.dial(w.ctx, u, w.setConn)
		if err != nil {
			w.setConn(nil)
			if w.ctx.Err() != nil {
				return
			}
			w.count(func(st *Stats) { st.ConnectFailures++ })
			w.logErr("", err)
			failsInRow++
			if failsInRow < len(list) {
				continue // try the rest of the list before backing off
			}
			failsInRow = 0
			attempt++
			if !w.sleep(w.backoff(attempt, backoffCap)) {
				return
			}
			continue
		}
		failsInRow = 0
		w.setConn(c.nc)
		w.learn(c.info.ConnectURLs, u)
		w.count(func(st *Stats) {
			st.Connects++
			st.Connected = true
			st.Server = u.redact
		})
		w.logf("connected to %s as edge %q (server %s, version %s)", u.redact, w.s.edge, c.info.ServerID, c.info.Version)
		began := time.Now()
		err = w.safeRunLink(c)
		c.nc.Close()
		w.setConn(nil)
		w.state.SetSynced(false)
		w.count(func(st *Stats) {
			st.Disconnects++
			st.Connected = false
			st.Server = ""
			st.Consumer = ""
			if errors.Is(err, errProtocol) {
				st.ProtocolErrors++
			}
		})
		if w.ctx.Err() != nil {
			return
		}
		w.logErr("connection to "+u.redact+" lost: ", err)
		if time.Since(began) > 10*time.Second || errors.Is(err, errLameDuck) {
			attempt = 0
		}
		if attempt == 0 {
			// The first retry goes to the next server at once.
			attempt++
			continue
		}
		attempt++
		if !w.sleep(w.backoff(attempt, backoffCap)) {
			return
		}
	}
}

// serverPool is the list of servers to try: the configured ones in random
// order, then the cluster peers the servers announced.
type serverPool struct {
	configured []serverURL
	learned    []serverURL
	next       int
}

func (p *serverPool) all() []serverURL {
	out := make([]serverURL, 0, len(p.configured)+len(p.learned))
	out = append(out, p.configured...)
	return append(out, p.learned...)
}

// learn replaces the learned cluster peers with the connect_urls a server
// announced (host:port entries). Announced entries never carry credentials;
// a configured URL's own credentials go only to a peer on the same host.
func (w *Watcher) learn(urls []string, via serverURL) {
	if len(urls) == 0 {
		return
	}
	seen := map[string]bool{}
	for i := 0; i < len(w.pool.configured); i++ {
		seen[w.pool.configured[i].host] = true
	}
	scheme := "nats://"
	if via.tls {
		scheme = "tls://"
	}
	var fresh []serverURL
	for i := 0; i < len(urls) && i < 4*maxLearned && len(fresh) < maxLearned; i++ {
		raw := strings.TrimSpace(urls[i])
		if raw == "" || len(raw) > 300 || strings.ContainsAny(raw, "@/ \t\r\n?#") {
			continue
		}
		u, err := parseServerURL(scheme + raw)
		if err != nil || seen[u.host] {
			continue
		}
		seen[u.host] = true
		for j := 0; j < len(w.pool.configured); j++ {
			c := w.pool.configured[j]
			if strings.EqualFold(c.name, u.name) && (c.user != "" || c.token != "") {
				u.user, u.pass, u.token = c.user, c.pass, c.token
				break
			}
		}
		fresh = append(fresh, u)
	}
	// Keep the known peers in their order; new ones go after, shuffled.
	var kept, added []serverURL
	for i := 0; i < len(w.pool.learned); i++ {
		for j := 0; j < len(fresh); j++ {
			if fresh[j].host == w.pool.learned[i].host {
				kept = append(kept, fresh[j])
				break
			}
		}
	}
	for j := 0; j < len(fresh); j++ {
		known := false
		for i := 0; i < len(kept); i++ {
			if kept[i].host == fresh[j].host {
				known = true
				break
			}
		}
		if !known {
			added = append(added, fresh[j])
		}
	}
	w.shuffle(added)
	w.pool.learned = append(kept, added...)
	n := len(w.pool.learned)
	w.count(func(st *Stats) { st.LearnedServers = n })
}

// shuffle permutes servers in place (Fisher-Yates; plain code for yaegi).
func (w *Watcher) shuffle(servers []serverURL) {
	for i := len(servers) - 1; i > 0; i-- {
		j := w.rnd.Intn(i + 1)
		servers[i], servers[j] = servers[j], servers[i]
	}
}

// backoff is the delay before retry number attempt (1-based): exponential,
// capped, with jitter so that many edges do not reconnect in step.
func (w *Watcher) backoff(attempt int, limit time.Duration) time.Duration {
	d := backoffBase
	for i := 1; i < attempt && d < limit; i++ {
		d *= 2
	}
	if d > limit {
		d = limit
	}
	half := int64(d / 2)
	if half <= 0 {
		return d
	}
	return time.Duration(half + w.rnd.Int63n(half+1))
}

// sleep waits for d or until the watcher is closed; false means closed.
func (w *Watcher) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-w.ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
