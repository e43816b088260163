package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgepass/edgepass/integration/harness"
	"github.com/edgepass/edgepass/plugin/natsedge"
	"github.com/nats-io/nats.go"
)

// The daemons' buckets (the defaults) and their streams.
var bucketStreams = []string{"KV_" + natsedge.DefaultBucket, "KV_edgepass_sessions", "KV_edgepass_keys"}

// streamInfo reports, per bucket stream, its replica count and leader.
func streamInfo(ctx context.Context, s *harness.HAStack) (replicas map[string]int, leaders map[string]string, err error) {
	nc, js, err := s.NATSAccess().JetStream("edgepass-chaos-inspect")
	if err != nil {
		return nil, nil, err
	}
	defer nc.Close()
	replicas, leaders = map[string]int{}, map[string]string{}
	for _, name := range bucketStreams {
		st, err := js.Stream(ctx, name)
		if err != nil {
			return nil, nil, fmt.Errorf("stream %s: %w", name, err)
		}
		info := st.CachedInfo()
		replicas[name] = info.Config.Replicas
		if info.Cluster != nil {
			leaders[name] = info.Cluster.Leader
		}
	}
	return replicas, leaders, nil
}

// edgeConsumer is an edge's consumer on the edge bucket's stream: the node
// it lives on (R1) and the node of the connection it delivers to.
type edgeConsumer struct {
	name, leader, connNode string
}

// edgeConsumers lists the edge consumers that have a subscriber, with the
// node each lives on and the node its subscriber is connected to (matched
// by deliver subject in the nodes' /connz).
func edgeConsumers(ctx context.Context, s *harness.HAStack) ([]edgeConsumer, error) {
	nc, js, err := s.NATSAccess().JetStream("edgepass-chaos-inspect")
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	st, err := js.Stream(ctx, bucketStreams[0])
	if err != nil {
		return nil, err
	}
	subscriber := map[string]string{} // deliver subject → node
	for _, n := range s.NATS.Nodes {
		if !n.Running() {
			continue
		}
		conns, err := n.ClientsNamed(ctx, "edgepass-edge")
		if err != nil {
			return nil, err
		}
		for _, c := range conns {
			for _, sub := range c.Subs {
				subscriber[sub] = n.Name
			}
		}
	}
	var out []edgeConsumer
	lister := st.ListConsumers(ctx)
	for info := range lister.Info() {
		if info.Cluster == nil || info.Config.DeliverSubject == "" {
			continue
		}
		node, ok := subscriber[info.Config.DeliverSubject]
		if !ok {
			continue // a consumer its edge left (it expires after inactive_threshold)
		}
		out = append(out, edgeConsumer{name: info.Name, leader: info.Cluster.Leader, connNode: node})
	}
	if err := lister.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

// How a round picks the node it kills.
const (
	pickEdgesNode = "the node most edges are connected to"
	// pickConsumerHost: a node hosting an edge's consumer while that edge
	// is connected to another node (the edge's connection survives, its
	// consumer does not); the edge stream's leader if there is none.
	pickConsumerHost = "the node hosting an edge's consumer, that edge being connected elsewhere"
	pickEdgeLeader   = "the leader of the edge bucket's stream"
)

// failoverRound is one NATS node kill.
type failoverRound struct {
	n        int
	pick     string
	victim   *harness.NATSNode
	killedAt time.Time
	leaders  map[string]string // stream → leader before the kill
	affected []string          // edges that were connected to the victim
	// failover is kill → the edge's "connected to" line naming a survivor.
	failover   map[string]time.Duration
	failoverTo map[string]string
	connzBack  time.Duration // kill → survivors' /connz list every edge
	revs       []revResult
}

// edgeNodes finds each edge's NATS node from its last "connected to" log
// line and checks it against the nodes' /connz.
func (r *run) edgeNodes(t *testing.T) (map[string]*harness.NATSNode, map[string]int) {
	t.Helper()
	s := r.s
	edgeNode := map[string]*harness.NATSNode{}
	for _, e := range s.Traefiks {
		u, err := lastConnectedURL(e, 0)
		if err != nil {
			t.Fatal(err)
		}
		n := s.NATS.Node(u)
		if n == nil || !n.Running() {
			t.Fatalf("%s: its last %q line names %q, not a running node of the cluster", e.Spec.Name, edgeConnectedLine, u)
		}
		edgeNode[e.Spec.Name] = n
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conns, err := edgeConns(ctx, s.NATS)
	if err != nil {
		t.Fatalf("/connz: %v", err)
	}
	if sum(conns) != len(s.Traefiks) {
		t.Fatalf("the nodes' /connz list %v edgepass-edge connections, want one per edge (%d)", conns, len(s.Traefiks))
	}
	for e, n := range edgeNode {
		if conns[n.Name] == 0 {
			t.Fatalf("%s logged that it is connected to %s, whose /connz lists no edgepass-edge client (%v)", e, n.Name, conns)
		}
	}
	return edgeNode, conns
}

// nodeFailover kills one NATS node (SIGKILL) under load, watches the edges
// that were on it come back on a survivor, and revokes revs' sessions at
// staggered moments of the failover, measuring each; a login runs during
// the failover too. The node stays down.
func (r *run) nodeFailover(t *testing.T, n int, pick string, revs []*session) *failoverRound {
	t.Helper()
	s := r.s
	round := &failoverRound{n: n, pick: pick, failover: map[string]time.Duration{}, failoverTo: map[string]string{}}
	edgeNode, conns := r.edgeNodes(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	replicas, leaders, err := streamInfo(ctx, s)
	cancel()
	if err != nil {
		t.Fatalf("round %d: stream info: %v", n, err)
	}
	for name, rep := range replicas {
		if rep != len(s.NATS.Nodes) {
			t.Errorf("stream %s has %d replicas, want %d (nats.replicas)", name, rep, len(s.NATS.Nodes))
		}
	}
	round.leaders = leaders
	perNode := map[*harness.NATSNode][]string{}
	for _, e := range s.Traefiks {
		perNode[edgeNode[e.Spec.Name]] = append(perNode[edgeNode[e.Spec.Name]], e.Spec.Name)
	}
	var consumers []edgeConsumer
	ctx, cancel = context.WithTimeout(context.Background(), 5*time.Second)
	consumers, err = edgeConsumers(ctx, s)
	cancel()
	if err != nil {
		t.Fatalf("round %d: edge consumers: %v", n, err)
	}
	if pick == pickConsumerHost {
		count := map[string]int{}
		for _, c := range consumers {
			if c.leader != c.connNode {
				count[c.leader]++
			}
		}
		for _, node := range s.NATS.Nodes {
			if count[node.Name] > 0 && (round.victim == nil || count[node.Name] > count[round.victim.Name]) {
				round.victim = node
			}
		}
		if round.victim == nil {
			t.Logf("round %d: every edge consumer lives on the node its edge is connected to; killing the edge stream's leader instead", n)
			pick = pickEdgeLeader
			round.pick = pick
		}
	}
	switch {
	case round.victim != nil:
	case pick == pickEdgeLeader:
		for _, node := range s.NATS.Nodes {
			if node.Name == leaders[bucketStreams[0]] {
				round.victim = node
			}
		}
		if round.victim == nil {
			t.Fatalf("round %d: the edge stream's leader %q is not a node of the cluster", n, leaders[bucketStreams[0]])
		}
	default:
		round.victim = edgeNode[s.Traefiks[0].Spec.Name]
		for node, es := range perNode {
			if len(es) > len(perNode[round.victim]) {
				round.victim = node
			}
		}
	}
	victim := round.victim
	round.affected = perNode[victim]
	sort.Strings(round.affected)
	offsets := map[string]int64{}
	for _, e := range s.Traefiks {
		offsets[e.Spec.Name] = e.LogOffset()
	}
	var on []string
	for _, e := range s.Traefiks {
		on = append(on, fmt.Sprintf("%s on %s", e.Spec.Name, edgeNode[e.Spec.Name].Name))
	}
	var led, cons []string
	for _, st := range bucketStreams {
		led = append(led, fmt.Sprintf("%s led by %s", st, leaders[st]))
	}
	for _, c := range consumers {
		cons = append(cons, fmt.Sprintf("%s on %s (its edge on %s)", c.name, c.leader, c.connNode))
	}
	t.Logf("round %d: %s (/connz %v); %s; consumers: %s; killing %s, %s; edges connected to it: %v",
		n, strings.Join(on, ", "), conns, strings.Join(led, ", "), strings.Join(cons, ", "), victim.Name, pick, round.affected)

	round.killedAt = time.Now()
	killedAt := round.killedAt
	if err := victim.Kill(); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, name := range round.affected {
		var e *harness.Traefik
		for _, x := range s.Traefiks {
			if x.Spec.Name == name {
				e = x
			}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Since(killedAt) < 15*time.Second {
				u, err := lastConnectedURL(e, offsets[name])
				if err == nil && u != "" && u != victim.URL {
					mu.Lock()
					round.failover[name], round.failoverTo[name] = time.Since(killedAt), u
					mu.Unlock()
					return
				}
				time.Sleep(10 * time.Millisecond)
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for time.Since(killedAt) < 15*time.Second {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			c, err := edgeConns(ctx, s.NATS)
			cancel()
			if err == nil && sum(c) == len(s.Traefiks) {
				mu.Lock()
				round.connzBack = time.Since(killedAt)
				mu.Unlock()
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	offsetsAt := []time.Duration{0, 250 * time.Millisecond, 500 * time.Millisecond, time.Second, 1500 * time.Millisecond}
	for i, sess := range revs {
		at := offsetsAt[i%len(offsetsAt)]
		wg.Add(1)
		go func() {
			defer wg.Done()
			time.Sleep(time.Until(killedAt.Add(at)))
			res := r.revoke(sess, daemonsFrom(s.Daemons, s.Daemons[i%len(s.Daemons)]), 20*time.Second)
			res.label += fmt.Sprintf(" (kill+%s)", at)
			mu.Lock()
			round.revs = append(round.revs, res)
			mu.Unlock()
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		time.Sleep(time.Until(killedAt.Add(300 * time.Millisecond)))
		edge := s.Traefiks[n%len(s.Traefiks)]
		if sess, err := r.login(fmt.Sprintf("during-failover-%d", n), harness.BobUser, edge); err != nil {
			t.Errorf("round %d: login during the NATS node failover: %v", n, err)
		} else {
			t.Logf("round %d: a login during the failover completed (/login on %s, /callback on %s)", n, sess.loginBy, sess.callbackBy)
		}
	}()
	wg.Wait()

	for _, name := range round.affected {
		d, ok := round.failover[name]
		switch {
		case !ok:
			t.Errorf("(a) round %d: %s never logged %q a surviving node within 15s of %s's death", n, name, edgeConnectedLine, victim.Name)
		case d > failoverBudget:
			t.Errorf("(a) round %d: %s back on a surviving node (%s) after %s, want within %s", n, name, round.failoverTo[name], d.Round(time.Millisecond), failoverBudget)
		default:
			t.Logf("(a) round %d: %s failed over from %s to %s in %s", n, name, victim.Name, round.failoverTo[name], d.Round(time.Millisecond))
		}
	}
	if round.connzBack == 0 {
		t.Errorf("(a) round %d: the surviving nodes' /connz never listed one edgepass-edge connection per edge within 15s", n)
	} else {
		t.Logf("(a) round %d: the surviving nodes' /connz list every edge %s after the kill", n, round.connzBack.Round(time.Millisecond))
	}
	sort.Slice(round.revs, func(i, j int) bool { return round.revs[i].issued.Before(round.revs[j].issued) })
	if r.trace != nil {
		lines := r.trace.since(killedAt)
		if len(lines) == 0 {
			lines = []string{"(none)"}
		}
		t.Logf("round %d: edge consumer creates since the kill (seen with the daemon's rights):\n    %s", n, strings.Join(lines, "\n    "))
	}
	r.logRevocations(t, fmt.Sprintf("round %d, killing %s (%s)", n, victim.Name, pick), round.revs)
	return round
}

// apiTrace records, with the daemon's rights, the edges' consumer create
// requests on the edge bucket's stream and the server's replies to them:
// when an edge stops applying facts after a node failure, it shows whether
// its requests went unanswered or were refused.
type apiTrace struct {
	nc      *nats.Conn
	mu      sync.Mutex
	events  []apiEvent
	pending map[string]int // reply subject → index in events
}

type apiEvent struct {
	at, answered time.Time
	consumer     string
	from         string // deliver policy (and start sequence)
	answer       string
}

func startAPITrace(s *harness.HAStack) (*apiTrace, error) {
	nc, err := s.NATSAccess().Connect("edgepass-chaos-trace")
	if err != nil {
		return nil, err
	}
	a := &apiTrace{nc: nc, pending: map[string]int{}}
	prefix := "$JS.API.CONSUMER.CREATE." + bucketStreams[0] + "."
	if _, err := nc.Subscribe(prefix+"*", func(m *nats.Msg) {
		var req struct {
			Config struct {
				DeliverPolicy string `json:"deliver_policy"`
				OptStartSeq   uint64 `json:"opt_start_seq"`
			} `json:"config"`
		}
		_ = json.Unmarshal(m.Data, &req)
		from := req.Config.DeliverPolicy
		if req.Config.OptStartSeq > 0 {
			from += fmt.Sprintf(" %d", req.Config.OptStartSeq)
		}
		a.mu.Lock()
		a.events = append(a.events, apiEvent{at: time.Now(), consumer: strings.TrimPrefix(m.Subject, prefix), from: from})
		if m.Reply != "" {
			a.pending[m.Reply] = len(a.events) - 1
		}
		a.mu.Unlock()
	}); err != nil {
		nc.Close()
		return nil, err
	}
	if _, err := nc.Subscribe(natsedge.InboxPrefix(harness.DefaultEdgeName)+".>", func(m *nats.Msg) {
		a.mu.Lock()
		defer a.mu.Unlock()
		i, ok := a.pending[m.Subject]
		if !ok {
			return
		}
		delete(a.pending, m.Subject)
		var resp struct {
			Error *struct {
				Code        int    `json:"code"`
				ErrCode     int    `json:"err_code"`
				Description string `json:"description"`
			} `json:"error"`
			NumPending uint64 `json:"num_pending"`
			Cluster    *struct {
				Leader string `json:"leader"`
			} `json:"cluster"`
		}
		answer := "unreadable answer"
		if json.Unmarshal(m.Data, &resp) == nil {
			switch {
			case resp.Error != nil:
				answer = fmt.Sprintf("error %d/%d %q", resp.Error.Code, resp.Error.ErrCode, resp.Error.Description)
			case resp.Cluster != nil:
				answer = fmt.Sprintf("created on %s, %d pending", resp.Cluster.Leader, resp.NumPending)
			default:
				answer = fmt.Sprintf("created, %d pending", resp.NumPending)
			}
		}
		a.events[i].answered, a.events[i].answer = time.Now(), answer
	}); err != nil {
		nc.Close()
		return nil, err
	}
	if err := nc.Flush(); err != nil {
		nc.Close()
		return nil, err
	}
	return a, nil
}

// since renders the create requests from t0 on, times relative to t0.
func (a *apiTrace) since(t0 time.Time) []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []string
	for _, e := range a.events {
		if e.at.Before(t0) {
			continue
		}
		answer := "no reply seen"
		if !e.answered.IsZero() {
			answer = fmt.Sprintf("%s after %s", e.answer, e.answered.Sub(e.at).Round(time.Millisecond))
		}
		out = append(out, fmt.Sprintf("+%s create %s (%s): %s", e.at.Sub(t0).Round(time.Millisecond), e.consumer, e.from, answer))
	}
	return out
}

func (a *apiTrace) Close() { a.nc.Close() }
