package bench

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/edgepass/edgepass/integration/harness"
	"github.com/edgepass/edgepass/plugin/edgestate"
	"github.com/edgepass/edgepass/plugin/natsedge"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Edge is the benchmark's NATS connection to the daemon's embedded server:
// it writes edge facts the way the daemon does (KV puts) and reads the
// edges' heartbeats.
type Edge struct {
	NC *nats.Conn
	JS jetstream.JetStream
	KV jetstream.KeyValue

	heartbeats *harness.HeartbeatWatcher
}

// ConnectEdge connects to NATS, opens the edge bucket the daemon created and
// listens to heartbeats.
func ConnectEdge(ctx context.Context, access harness.NATSAccess) (*Edge, error) {
	nc, err := natsConnect(access)
	if err != nil {
		return nil, fmt.Errorf("bench: nats: connect to the daemon's embedded NATS at %s: %w", access.URL, err)
	}
	e := &Edge{NC: nc}
	if e.JS, err = jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(2048)); err != nil {
		e.Close()
		return nil, fmt.Errorf("bench: nats: jetstream: %w", err)
	}
	if e.KV, err = e.JS.KeyValue(ctx, natsedge.DefaultBucket); err != nil {
		e.Close()
		return nil, fmt.Errorf("bench: nats: open the edge bucket %s (the daemon creates it at start): %w", natsedge.DefaultBucket, err)
	}
	if e.heartbeats, err = harness.WatchHeartbeats(access); err != nil {
		e.Close()
		return nil, fmt.Errorf("bench: nats: %w", err)
	}
	return e, nil
}

func natsConnect(a harness.NATSAccess) (*nats.Conn, error) {
	opts := []nats.Option{nats.Name("edgepass-bench"), nats.Timeout(5 * time.Second)}
	if a.User != "" {
		opts = append(opts, nats.UserInfo(a.User, a.Password))
	}
	return nats.Connect(a.URL, opts...)
}

// Close disconnects.
func (e *Edge) Close() {
	if e == nil {
		return
	}
	if e.heartbeats != nil {
		e.heartbeats.Close()
	}
	if e.NC != nil {
		e.NC.Close()
	}
}

// WaitHeartbeat waits for a heartbeat of the benchmark's Traefik that
// satisfies ok. Edges report every 5 s.
func (e *Edge) WaitHeartbeat(timeout time.Duration, what string, ok func(natsedge.Heartbeat) bool) (natsedge.Heartbeat, error) {
	hb, err := e.heartbeats.WaitFor(ReplicaID, time.Time{}, timeout, func(hb harness.Heartbeat) bool { return ok(hb.Heartbeat) })
	if err != nil {
		return hb.Heartbeat, fmt.Errorf("bench: traefik's plugin did not report %s on %s: %w; is its NATS watcher running?", what, natsedge.HeartbeatWildcard(natsedge.DefaultBucket), err)
	}
	return hb.Heartbeat, nil
}

// lastSeq is the edge stream's last sequence.
func (e *Edge) lastSeq(ctx context.Context) (uint64, error) {
	stream := "KV_" + natsedge.DefaultBucket
	st, err := e.JS.Stream(ctx, stream)
	if err != nil {
		return 0, fmt.Errorf("bench: nats: stream %s: %w", stream, err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("bench: nats: stream %s info: %w", stream, err)
	}
	return info.State.LastSeq, nil
}

// Latencies summarizes a set of timings.
type Latencies struct {
	N        int
	P50, P99 time.Duration
	Max      time.Duration
	// Failures did not happen within the timeout; they count as the
	// timeout in the percentiles.
	Failures int
}

func summarize(samples []time.Duration, failures int) Latencies {
	s := append([]time.Duration(nil), samples...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	l := Latencies{N: len(s), Failures: failures}
	if len(s) == 0 {
		return l
	}
	l.P50, l.P99, l.Max = percentile(s, 0.50), percentile(s, 0.99), s[len(s)-1]
	return l
}

// percentile of sorted samples, nearest rank.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(p*float64(len(sorted))+0.999999) - 1
	if rank < 0 {
		rank = 0
	}
	if rank >= len(sorted) {
		rank = len(sorted) - 1
	}
	return sorted[rank]
}

// Propagation is how long a revocation takes to reach the edge.
type Propagation struct {
	Method string
	Revoke Latencies // fact written -> Traefik refuses the token
}

// poller asks Traefik about one token over a kept-alive connection.
type poller struct {
	c      *http.Client
	url    string
	cookie string
}

func newPoller(s *Stack, sess *Session) *poller {
	return &poller{
		c:      &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 1}},
		url:    s.TraefikURL + Plugin.Path + "/revocation-probe",
		cookie: sess.Cookie(),
	}
}

// until polls until accepted(status) is want, returning when it saw it.
func (p *poller) until(want bool, timeout time.Duration) (time.Time, error) {
	deadline := time.Now().Add(timeout)
	for {
		status, body, err := probe(p.c, p.url, p.cookie)
		now := time.Now()
		if err != nil {
			return now, fmt.Errorf("bench: probe traefik %s: %w", p.url, err)
		}
		accepted := status == http.StatusOK
		if accepted == want {
			return now, nil
		}
		if !accepted && status != http.StatusUnauthorized && status != http.StatusForbidden {
			return now, fmt.Errorf("bench: probe traefik %s: unexpected %d: %.200s", p.url, status, body)
		}
		if now.After(deadline) {
			return now, errTimeout
		}
	}
}

var errTimeout = errors.New("timeout")

// MeasureRevocationKV signs in n times and, for each session, writes
// revoke.session.<sid> into the edge bucket (what the daemon's admin API,
// logout and back-channel logout do) and polls Traefik until it refuses the
// token. A revocation cannot be taken back (edges ignore deletes), so each
// sample needs a session of its own; sign-ins are not timed.
func MeasureRevocationKV(ctx context.Context, s *Stack, e *Edge, n int, timeout time.Duration) (Propagation, error) {
	value := []byte(`{"exp":` + strconv.FormatInt(time.Now().Add(time.Hour).Unix(), 10) + `}`)
	revoke, err := measureRevocations(s, n, timeout, "revocation", func(sess *Session) error {
		key := edgestate.PrefixRevokeSession + sess.SessionID
		if _, err := e.KV.Put(ctx, key, value); err != nil {
			return fmt.Errorf("bench: revocation: put %s: %w", key, err)
		}
		return nil
	})
	if err != nil {
		return Propagation{}, err
	}
	return Propagation{Method: "KV put of revoke.session.<sid> -> Traefik refuses", Revoke: revoke}, nil
}

// measureRevocations signs in n times and, once Traefik accepts the new
// session, revokes it with revoke, timing from the start of revoke to
// Traefik's first refusal. A refusal not seen within timeout is a failure,
// counted at timeout. what names the measurement in errors.
func measureRevocations(s *Stack, n int, timeout time.Duration, what string, revoke func(*Session) error) (Latencies, error) {
	var samples []time.Duration
	fails := 0
	for i := 0; i < n; i++ {
		sess, err := Login(s)
		if err != nil {
			return Latencies{}, err
		}
		p := newPoller(s, sess)
		if _, err := p.until(true, timeout); err != nil {
			return Latencies{}, fmt.Errorf("bench: %s: the new session is not accepted: %w", what, err)
		}
		start := time.Now()
		if err := revoke(sess); err != nil {
			return Latencies{}, err
		}
		at, err := p.until(false, timeout)
		switch {
		case errors.Is(err, errTimeout):
			fails++
			samples = append(samples, timeout)
		case err != nil:
			return Latencies{}, err
		default:
			samples = append(samples, at.Sub(start))
		}
	}
	return summarize(samples, fails), nil
}

// MeasureRevocationAdmin signs in n times and revokes each session with the
// daemon's admin API (DELETE /api/v1/sessions/{sid}), timing from the
// request to the first refusal at Traefik: the operator's view, end to end.
func MeasureRevocationAdmin(s *Stack, n int, timeout time.Duration) (Propagation, error) {
	revoke, err := measureRevocations(s, n, timeout, "admin revocation", func(sess *Session) error {
		status, body, err := s.Daemon.Admin("DELETE", "/api/v1/sessions/"+sess.SessionID, nil)
		if err != nil {
			return fmt.Errorf("bench: daemon admin API: %w", err)
		}
		if status/100 != 2 {
			return fmt.Errorf("bench: daemon admin API: DELETE /api/v1/sessions/<sid> answered %d: %.200s", status, body)
		}
		return nil
	})
	if err != nil {
		return Propagation{}, err
	}
	return Propagation{Method: "admin API DELETE /api/v1/sessions/{sid} -> Traefik refuses", Revoke: revoke}, nil
}

// EdgeMemory is what 100,000 revocations cost at the edge.
type EdgeMemory struct {
	Revocations int
	// Traefik's VmRSS before publishing and once its plugin reported
	// having applied everything; the delta also holds garbage the Go
	// runtime has not returned to the OS yet, so it is an upper bound.
	RSSBefore, RSSAfter int64
	// HeapBefore and HeapAfter are Traefik's live heap after a forced GC
	// (its /debug/vars): what the revocations really occupy, under Yaegi.
	HeapBefore, HeapAfter int64
	PublishTook           time.Duration
	ApplyTook             time.Duration // publish start -> heartbeat shows all applied
	// StateHeap is edgestate.State's live heap for the same facts,
	// measured in this process (compiled, after GC): the state alone.
	StateHeap int64
}

// RSSDelta is the process growth.
func (m EdgeMemory) RSSDelta() int64 { return m.RSSAfter - m.RSSBefore }

// HeapDelta is the live heap growth.
func (m EdgeMemory) HeapDelta() int64 { return m.HeapAfter - m.HeapBefore }

// MeasureEdgeMemory publishes n revoke.session facts to the edge bucket and
// reads Traefik's RSS and live heap before and after its plugin applied them
// (by its heartbeat's sequence). Traefik must run with api.debug.
func MeasureEdgeMemory(ctx context.Context, s *Stack, e *Edge, n int) (EdgeMemory, error) {
	m := EdgeMemory{Revocations: n}
	pid := s.Traefik.PID()
	var err error
	if m.HeapBefore, err = TraefikHeap(ctx, s); err != nil {
		return m, err
	}
	if m.RSSBefore, err = rss(pid); err != nil {
		return m, err
	}
	value := []byte(`{"exp":` + strconv.FormatInt(time.Now().Add(time.Hour).Unix(), 10) + `}`)
	start := time.Now()
	futures := make([]jetstream.PubAckFuture, 0, n)
	for i := 0; i < n; i++ {
		subj := "$KV." + natsedge.DefaultBucket + "." + edgestate.PrefixRevokeSession + harness.RandomSecret(32)
		f, err := e.JS.PublishAsync(subj, value)
		if err != nil {
			return m, fmt.Errorf("bench: edge memory: publish revocation %d of %d: %w", i+1, n, err)
		}
		futures = append(futures, f)
	}
	select {
	case <-e.JS.PublishAsyncComplete():
	case <-time.After(3 * time.Minute):
		return m, fmt.Errorf("bench: edge memory: NATS did not acknowledge %d revocations within 3m", n)
	}
	var refused int
	var firstErr error
	for _, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			if refused++; firstErr == nil {
				firstErr = err
			}
		}
	}
	if refused > 0 {
		return m, fmt.Errorf("bench: edge memory: JetStream refused %d of %d revocations, first: %v", refused, n, firstErr)
	}
	m.PublishTook = time.Since(start)
	last, err := e.lastSeq(ctx)
	if err != nil {
		return m, err
	}
	if _, err := e.WaitHeartbeat(3*time.Minute, fmt.Sprintf("stream sequence %d applied", last), func(hb natsedge.Heartbeat) bool {
		return hb.Seq >= last
	}); err != nil {
		return m, err
	}
	m.ApplyTook = time.Since(start)
	time.Sleep(2 * time.Second) // let the runtime finish the GC cycle the burst started
	if m.RSSAfter, err = rss(pid); err != nil {
		return m, err
	}
	if m.HeapAfter, err = TraefikHeap(ctx, s); err != nil {
		return m, err
	}
	m.StateHeap, err = stateHeap(n)
	return m, err
}

// rss reads a process's resident set size.
func rss(pid int) (int64, error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, fmt.Errorf("bench: read traefik's memory (/proc/%d/status): %w", pid, err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest)
			if len(f) == 2 && f[1] == "kB" {
				kb, err := strconv.ParseInt(f[0], 10, 64)
				if err == nil {
					return kb * 1024, nil
				}
			}
		}
	}
	return 0, fmt.Errorf("bench: no VmRSS line in /proc/%d/status", pid)
}

// stateHeap is the live heap of an edgestate.State holding n session
// revocations, in this process.
func stateHeap(n int) (int64, error) {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	st := edgestate.New()
	now := time.Now()
	value := []byte(`{"exp":` + strconv.FormatInt(now.Add(time.Hour).Unix(), 10) + `}`)
	for i := 0; i < n; i++ {
		_ = st.Apply(edgestate.PrefixRevokeSession+harness.RandomSecret(32), "", value, uint64(i+1), now)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if got := st.Stats().Sessions; got != n {
		return 0, fmt.Errorf("bench: edgestate holds %d of %d session revocations applied", got, n)
	}
	return int64(after.HeapAlloc) - int64(before.HeapAlloc), nil
}
