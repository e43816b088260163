package natsedge_test

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgepass/edgepass/integration/harness"
	"github.com/edgepass/edgepass/plugin/natsedge"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// freePorts picks n free TCP ports on 127.0.0.1, distinct from every other
// port the process picked (harness.FreePort: two calls never collide).
func freePorts(t testing.TB, n int) []int {
	t.Helper()
	var ports []int
	for i := 0; i < n; i++ {
		p, err := harness.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		ports = append(ports, p)
	}
	return ports
}

// startCluster runs three embedded nats-servers routed into one JetStream
// cluster; the daemon user may do everything and edge "c" its permissions.
func startCluster(t *testing.T) []*natsServer {
	t.Helper()
	const n = 3
	clientPorts := freePorts(t, n)
	routePorts := freePorts(t, n)
	var routes []*url.URL
	for i := 0; i < n; i++ {
		routes = append(routes, &url.URL{Scheme: "nats-route", Host: fmt.Sprintf("127.0.0.1:%d", routePorts[i])})
	}
	nodes := make([]*natsServer, n)
	for i := 0; i < n; i++ {
		ns := &natsServer{t: t}
		ns.opts = server.Options{
			ServerName: fmt.Sprintf("n%d", i),
			Host:       "127.0.0.1",
			Port:       clientPorts[i],
			JetStream:  true,
			StoreDir:   t.TempDir(),
			NoLog:      true,
			NoSigs:     true,
			Cluster:    server.ClusterOpts{Name: "edgepass", Host: "127.0.0.1", Port: routePorts[i]},
			Routes:     routes,
			Users: []*server.User{
				{Username: daemonUser, Password: daemonPass},
				{Username: "c", Password: "c-pw", Permissions: edgePermissions("c")},
			},
		}
		s, err := server.NewServer(&ns.opts)
		if err != nil {
			t.Fatal(err)
		}
		s.Start()
		ns.srv = s
		nodes[i] = ns
		t.Cleanup(ns.stop)
	}
	for _, ns := range nodes {
		if !ns.srv.ReadyForConnections(20 * time.Second) {
			t.Fatal("cluster node not ready")
		}
	}
	return nodes
}

func clusterURLs(nodes []*natsServer) []string {
	var out []string
	for _, ns := range nodes {
		out = append(out, ns.url())
	}
	return out
}

// replicatedBucket connects to the cluster as the daemon (reconnecting
// forever) and creates the edge bucket with three replicas, retrying while
// the cluster forms.
func replicatedBucket(t *testing.T, urls []string) jetstream.KeyValue {
	t.Helper()
	_, js := connectJS(t, strings.Join(urls, ","), nats.UserInfo(daemonUser, daemonPass), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	var kv jetstream.KeyValue
	waitFor(t, "replicated bucket", 30*time.Second, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		var err error
		kv, err = js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: bucket, History: 1, Replicas: 3})
		return err == nil
	})
	return kv
}

// TestFailoverInAThreeNodeCluster kills the node an edge is connected to:
// the edge is on another node within 2 s and keeps applying facts. One edge
// knows every node from its configuration, the other only the node it
// started on and the peers that node announced.
func TestFailoverInAThreeNodeCluster(t *testing.T) {
	nodes := startCluster(t)
	urls := clusterURLs(nodes)
	kv := replicatedBucket(t, urls)
	put := func(key string) {
		t.Helper()
		waitFor(t, "put "+key, 20*time.Second, func() bool {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			_, err := kv.PutString(ctx, key, revokeValue())
			return err == nil
		})
	}
	put("revoke.session.before")

	all, _ := watch(t, natsedge.Config{URLs: urls, User: "c", Password: "c-pw", ReplicaID: "configured-all", CrossCheckInterval: time.Second})
	waitFor(t, "synced", 20*time.Second, func() bool { return revoked(all, "before") && all.State().Synced() })
	victim := -1
	for i, u := range urls {
		if all.Stats().Server == u {
			victim = i
		}
	}
	if victim < 0 {
		t.Fatalf("edge on %q, not one of %v", all.Stats().Server, urls)
	}
	one, _ := watch(t, natsedge.Config{URLs: []string{urls[victim]}, User: "c", Password: "c-pw", ReplicaID: "configured-one", CrossCheckInterval: time.Second})
	waitFor(t, "synced and peers learned", 20*time.Second, func() bool {
		return revoked(one, "before") && one.State().Synced() && one.Stats().LearnedServers >= 2
	})

	killed := time.Now()
	nodes[victim].stop()
	for _, w := range []*natsedge.Watcher{all, one} {
		waitFor(t, "reconnected to a surviving node", 5*time.Second, func() bool {
			st := w.Stats()
			return st.Connected && st.Server != urls[victim] && st.Connects >= 2
		})
		if d := time.Since(killed); d > 2*time.Second {
			t.Fatalf("back on a surviving node after %s", d)
		}
	}
	t.Logf("both edges on surviving nodes %s after the kill", time.Since(killed).Round(time.Millisecond))
	put("revoke.session.after")
	for _, w := range []*natsedge.Watcher{all, one} {
		waitFor(t, "facts applied after the failover", 20*time.Second, func() bool { return revoked(w, "after") && w.State().Synced() })
	}
}

// metaLeader waits for the JetStream metadata leader among nodes.
func metaLeader(t *testing.T, nodes []*natsServer) int {
	t.Helper()
	leader := -1
	waitFor(t, "a JetStream metadata leader", 30*time.Second, func() bool {
		for i, ns := range nodes {
			ns.mu.Lock()
			s := ns.srv
			ns.mu.Unlock()
			if s != nil && s.JetStreamIsLeader() {
				leader = i
				return true
			}
		}
		return false
	})
	return leader
}

// TestEdgesFollowTheStreamWhileTheMetaLeaderIsElected kills the JetStream
// metadata leader while revocations are written. Creating a consumer needs
// that leader, and the cluster takes seconds to elect a new one, while the
// stream's leader acknowledges facts; the edges follow the stream with
// direct gets meanwhile (the bridge) and apply each revocation within 1 s of
// its acknowledgement. One edge was connected to the leader (it reconnects
// and needs a new consumer), the other to another node (its consumer may
// have lived on the leader).
func TestEdgesFollowTheStreamWhileTheMetaLeaderIsElected(t *testing.T) {
	nodes := startCluster(t)
	urls := clusterURLs(nodes)
	kv := replicatedBucket(t, urls)
	// put stores key until the stream acknowledges it and returns when.
	put := func(key string) time.Time {
		for {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			_, err := kv.PutString(ctx, key, revokeValue())
			cancel()
			if err == nil {
				return time.Now()
			}
		}
	}
	put("revoke.session.before")

	leader := metaLeader(t, nodes)
	var others []string
	for i, u := range urls {
		if i != leader {
			others = append(others, u)
		}
	}
	type edge struct {
		name string
		w    *natsedge.Watcher
		logs *logSink
	}
	var edges []edge
	for _, e := range []struct {
		name string
		urls []string
	}{{"on-the-leader", []string{urls[leader]}}, {"elsewhere", others}} {
		w, logs := watch(t, natsedge.Config{URLs: e.urls, User: "c", Password: "c-pw", ReplicaID: e.name})
		edges = append(edges, edge{e.name, w, logs})
	}
	for _, e := range edges {
		waitFor(t, e.name+" synced", 20*time.Second, func() bool { return revoked(e.w, "before") && e.w.State().Synced() })
	}
	waitFor(t, "peers learned", 10*time.Second, func() bool { return edges[0].w.Stats().LearnedServers >= 2 })

	// Revocations every 100 ms from 1 s before the kill to 8 s after; each
	// edge's time from acknowledgement to applying it.
	type sample struct {
		sid   string
		acked time.Time
		after map[string]time.Duration
	}
	var (
		mu      sync.Mutex
		samples []*sample
		wg      sync.WaitGroup
	)
	var killed time.Time
	start := time.Now()
	for i := 0; time.Since(start) < 9*time.Second; i++ {
		if killed.IsZero() && time.Since(start) >= time.Second {
			killed = time.Now()
			nodes[leader].stop()
			t.Logf("killed the metadata leader n%d", leader)
		}
		sid := fmt.Sprintf("m%d", i)
		acked := put("revoke.session." + sid)
		s := &sample{sid: sid, acked: acked, after: map[string]time.Duration{}}
		mu.Lock()
		samples = append(samples, s)
		mu.Unlock()
		for _, e := range edges {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for time.Since(acked) < 20*time.Second {
					if revoked(e.w, sid) {
						mu.Lock()
						s.after[e.name] = time.Since(acked)
						mu.Unlock()
						return
					}
					time.Sleep(time.Millisecond)
				}
			}()
		}
		time.Sleep(100 * time.Millisecond)
	}
	wg.Wait()
	newLeader := metaLeader(t, nodes)
	t.Logf("n%d is the new metadata leader (%s after the kill)", newLeader, time.Since(killed).Round(time.Millisecond))

	var worst time.Duration
	var all []time.Duration
	for _, s := range samples {
		for _, e := range edges {
			d, ok := s.after[e.name]
			if !ok {
				t.Errorf("%s never applied %s (acknowledged %s after the kill)", e.name, s.sid, s.acked.Sub(killed).Round(time.Millisecond))
				continue
			}
			all = append(all, d)
			if d > worst {
				worst = d
			}
			if d > time.Second {
				t.Errorf("%s applied %s %s after its acknowledgement (acknowledged %s after the kill), want within 1s", e.name, s.sid, d.Round(time.Millisecond), s.acked.Sub(killed).Round(time.Millisecond))
			}
		}
	}
	for _, e := range edges {
		st := e.w.Stats()
		t.Logf("%s: on %s, consumer %q, %d consumers created, %d resyncs, %d direct gets, %d entries through them", e.name, st.Server, st.Consumer, st.ConsumersCreated, st.Resyncs, st.DirectGets, st.DirectEntries)
		if t.Failed() {
			t.Logf("%s log:\n%s", e.name, e.logs)
		}
	}
	if len(all) > 0 {
		t.Logf("%d revocations around the kill: acknowledgement → edge applied p50 %s, p99 %s, max %s", len(samples), percentile(all, 0.5).Round(time.Millisecond), percentile(all, 0.99).Round(time.Millisecond), worst.Round(time.Millisecond))
	}
	for _, e := range edges {
		waitFor(t, e.name+" synced through a consumer again", 20*time.Second, func() bool { return e.w.State().Synced() && e.w.Stats().Consumer != "" })
	}
	if edges[0].w.Stats().DirectEntries == 0 {
		t.Errorf("the edge that lost its connection applied nothing through direct gets (the kill did not exercise the bridge)")
	}
}
