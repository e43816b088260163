package natsedge_test

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/edgepass/edgepass/plugin/natsedge"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// freePorts reserves n distinct free TCP ports on 127.0.0.1.
func freePorts(t testing.TB, n int) []int {
	t.Helper()
	var ports []int
	var lns []net.Listener
	for i := 0; i < n; i++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	for _, ln := range lns {
		ln.Close()
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

// TestFailoverInAThreeNodeCluster kills the node an edge is connected to:
// the edge is on another node within 2 s and keeps applying facts. One edge
// knows every node from its configuration, the other only the node it
// started on and the peers that node announced.
func TestFailoverInAThreeNodeCluster(t *testing.T) {
	nodes := startCluster(t)
	urls := clusterURLs(nodes)
	nc, err := nats.Connect(strings.Join(urls, ","), nats.UserInfo(daemonUser, daemonPass), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	var kv jetstream.KeyValue
	waitFor(t, "replicated bucket", 30*time.Second, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		kv, err = js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: bucket, History: 1, Replicas: 3})
		return err == nil
	})
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
