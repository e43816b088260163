package chaos

import (
	"fmt"
	"io"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edgepass/edgepass/integration/harness"
)

// servedAfterAckBudget bounds how long after a revocation was acknowledged
// (the admin API answered 2xx: the fact is stored in the R3 bucket) an edge
// may still serve the token: the time the fact takes to reach the edge,
// failover included. An edge without a consumer that delivers follows the
// stream with direct gets, which any surviving stream peer answers without
// the JetStream metadata leader (natsedge's bridge): it starts 300 ms after
// the edge lost its consumer (its connection), or when its consumer has
// been silent for an idle heartbeat (1 s) plus 300 ms (a consumer on the
// killed node, the edge connected elsewhere: the one case that waits), and
// polls every 100 ms. The worst case is therefore about 1.4 s after the
// consumer's last heartbeat, hence after the acknowledgement (measured: at
// most 1.2 s; before the bridge 3.6 s, while the cluster elected a
// metadata leader and no consumer could be created).
const servedAfterAckBudget = 2 * time.Second

// revocation is one session revocation the test issued.
type revocation struct {
	sid    string
	label  string
	issued time.Time // before the admin API call
	acked  time.Time // when the admin API answered 2xx (zero until then)
	// firstRefusal is when each edge was first seen refusing the token (the
	// end of the first 401).
	firstRefusal map[string]time.Time
}

// ledger checks every answer an edge gives against the revocations issued
// so far.
type ledger struct {
	mu   sync.Mutex
	revs map[string]*revocation // by sid
	// known are the sessions the test created: a 401 for one of them that
	// was never revoked is a lost session.
	known map[string]string // sid → label

	total, ok, refused, errs, other int
	// inWindow counts 200s for requests started after the ack but before
	// the edge was seen refusing (the fact was on its way).
	inWindow      int
	maxInWindow   time.Duration               // latest such request start after the ack
	violations    map[violationKey]*violation // a revoked token served when it must not be
	falseRefusals []string                    // a live session refused
	failures      []string                    // transport errors and statuses other than 200/401
}

func newLedger() *ledger {
	return &ledger{revs: map[string]*revocation{}, known: map[string]string{}, violations: map[violationKey]*violation{}}
}

// violationKey groups the answers that served a revoked token.
type violationKey struct {
	edge, label, kind string
}

const (
	servedAfterRefusing = "served again after the edge had refused it"
	servedPastBudget    = "served longer than the budget after the acknowledgement"
)

type violation struct {
	sid        string
	count      int
	minAfter   time.Duration // request start − ack
	maxAfter   time.Duration
	firstStart time.Time
}

func (l *ledger) violate(edge string, s *session, kind string, start time.Time, after time.Duration) {
	k := violationKey{edge, s.label, kind}
	v := l.violations[k]
	if v == nil {
		v = &violation{sid: s.sid, minAfter: after, firstStart: start}
		l.violations[k] = v
	}
	v.count++
	if after < v.minAfter {
		v.minAfter = after
	}
	if after > v.maxAfter {
		v.maxAfter = after
	}
}

// violationReport describes every group of violations, one line each.
func (l *ledger) violationReport() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for k, v := range l.violations {
		out = append(out, fmt.Sprintf("%s %s revoked session %s (%s…): %d answers to requests sent %s to %s after the revocation was acknowledged (budget %s; first at %s)",
			k.edge, k.kind, k.label, short(v.sid), v.count, v.minAfter.Round(time.Millisecond), v.maxAfter.Round(time.Millisecond), servedAfterAckBudget, v.firstStart.Format("15:04:05.000")))
	}
	sort.Strings(out)
	return out
}

func (l *ledger) addSession(s *session) {
	l.mu.Lock()
	l.known[s.sid] = s.label
	l.mu.Unlock()
}

func (l *ledger) issue(s *session, at time.Time) {
	l.mu.Lock()
	l.revs[s.sid] = &revocation{sid: s.sid, label: s.label, issued: at, firstRefusal: map[string]time.Time{}}
	l.mu.Unlock()
}

func (l *ledger) ack(sid string, at time.Time) {
	l.mu.Lock()
	if r := l.revs[sid]; r != nil && r.acked.IsZero() {
		r.acked = at
	}
	l.mu.Unlock()
}

func (l *ledger) revoked(sid string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.revs[sid] != nil
}

func addBounded(list []string, s string) []string {
	if len(list) < 50 {
		return append(list, s)
	}
	return list
}

// observe checks one answer of edge for the token of s, requested at start
// and answered at end.
func (l *ledger) observe(edge string, s *session, start, end time.Time, code int, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.total++
	r := l.revs[s.sid]
	switch {
	case err != nil:
		l.errs++
		l.failures = addBounded(l.failures, fmt.Sprintf("%s %s: %s: %v", end.Format("15:04:05.000"), edge, s.label, err))
	case code == http.StatusOK:
		l.ok++
		if r == nil || r.acked.IsZero() || !start.After(r.acked) {
			return
		}
		after := start.Sub(r.acked)
		if fr, ok := r.firstRefusal[edge]; ok && start.After(fr) {
			l.violate(edge, s, servedAfterRefusing, start, after)
			return
		}
		if after > servedAfterAckBudget {
			l.violate(edge, s, servedPastBudget, start, after)
			return
		}
		l.inWindow++
		if after > l.maxInWindow {
			l.maxInWindow = after
		}
	case code == http.StatusUnauthorized:
		l.refused++
		if r == nil || end.Before(r.issued) {
			l.falseRefusals = addBounded(l.falseRefusals, fmt.Sprintf("%s %s refused live session %s (%s…), never revoked", end.Format("15:04:05.000"), edge, s.label, short(s.sid)))
			return
		}
		if fr, ok := r.firstRefusal[edge]; !ok || end.Before(fr) {
			r.firstRefusal[edge] = end
		}
	default:
		l.other++
		l.failures = addBounded(l.failures, fmt.Sprintf("%s %s: %s: status %d", end.Format("15:04:05.000"), edge, s.label, code))
	}
}

func (l *ledger) firstRefusal(sid, edge string) (time.Time, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	r := l.revs[sid]
	if r == nil {
		return time.Time{}, false
	}
	t, ok := r.firstRefusal[edge]
	return t, ok
}

func (l *ledger) summary() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, v := range l.violations {
		n += v.count
	}
	return fmt.Sprintf("%d answers: %d served, %d refused, %d transport errors, %d other statuses; %d served in the propagation window after an ack (latest request %s after its ack); %d revoked-token answers past the rules, %d live sessions refused",
		l.total, l.ok, l.refused, l.errs, l.other, l.inWindow, l.maxInWindow.Round(time.Millisecond), n, len(l.falseRefusals))
}

func short(id string) string {
	if len(id) > 8 {
		return id[:8]
	}
	return id
}

// edgeClient sends API-style requests to the edges (no redirects).
var edgeClient = &http.Client{
	Timeout: 5 * time.Second,
	Transport: &http.Transport{
		MaxIdleConnsPerHost: 32,
		IdleConnTimeout:     30 * time.Second,
	},
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// edgeGet requests path on the edge with the session's token as a bearer
// token and returns the status.
func edgeGet(edge *harness.Traefik, path string, s *session) (int, error) {
	req, err := http.NewRequest("GET", edge.URL+path, nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Authorization", "Bearer "+s.token)
	resp, err := edgeClient.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

// load keeps authenticated requests going through every edge, each answer
// checked by the ledger.
type load struct {
	stop chan struct{}
	wg   sync.WaitGroup
	sent atomic.Int64
}

// startLoad runs perEdge goroutines per edge, each cycling through sessions
// with pause between requests.
func startLoad(l *ledger, edges []*harness.Traefik, sessions []*session, perEdge int, pause time.Duration) *load {
	ld := &load{stop: make(chan struct{})}
	for _, e := range edges {
		for g := 0; g < perEdge; g++ {
			ld.wg.Add(1)
			go func(e *harness.Traefik, offset int) {
				defer ld.wg.Done()
				for i := offset; ; i++ {
					select {
					case <-ld.stop:
						return
					default:
					}
					s := sessions[i%len(sessions)]
					start := time.Now()
					code, err := edgeGet(e, harness.PathApp+"/load/"+s.label, s)
					l.observe(e.Spec.Name, s, start, time.Now(), code, err)
					ld.sent.Add(1)
					time.Sleep(pause)
				}
			}(e, g*len(sessions)/perEdge)
		}
	}
	return ld
}

func (ld *load) Stop() {
	select {
	case <-ld.stop:
	default:
		close(ld.stop)
	}
	ld.wg.Wait()
}

// percentile is the nearest-rank percentile of ds (p in 0..100).
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	rank := int(p/100*float64(len(s))+0.999999) - 1
	if rank < 0 {
		rank = 0
	}
	if rank >= len(s) {
		rank = len(s) - 1
	}
	return s[rank]
}
