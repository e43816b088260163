package bench

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/edgepass/edgepass/integration/harness"
	"github.com/edgepass/edgepass/plugin/natsedge"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
)

// startNATS runs an in-process JetStream server with the edge bucket.
func startNATS(t *testing.T) string {
	t.Helper()
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	t.Cleanup(ns.Shutdown)
	return ns.ClientURL()
}

func TestEdgeWaitHeartbeatSeesTheNewestAfterManyUnread(t *testing.T) {
	url := startNATS(t)
	ctx := context.Background()
	if e, err := ConnectEdge(ctx, harness.NATSAccess{URL: url}); err == nil {
		e.Close()
		t.Fatal("ConnectEdge succeeded without the edge bucket")
	}
	// The daemon creates the bucket; here the test does.
	if err := createBucket(ctx, url); err != nil {
		t.Fatal(err)
	}
	e, err := ConnectEdge(ctx, harness.NATSAccess{URL: url})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()

	// 200 heartbeats nobody reads, then the one the caller waits for.
	for i := 1; i <= 200; i++ {
		data, _ := json.Marshal(natsedge.Heartbeat{Replica: ReplicaID, Seq: uint64(i)})
		if err := e.NC.Publish(natsedge.HeartbeatSubject(natsedge.DefaultBucket, "edge"), data); err != nil {
			t.Fatal(err)
		}
	}
	other, _ := json.Marshal(natsedge.Heartbeat{Replica: "another-replica", Seq: 1000})
	_ = e.NC.Publish(natsedge.HeartbeatSubject(natsedge.DefaultBucket, "edge"), other)
	if err := e.NC.Flush(); err != nil {
		t.Fatal(err)
	}
	hb, err := e.WaitHeartbeat(5*time.Second, "seq 200", func(hb natsedge.Heartbeat) bool { return hb.Seq >= 200 })
	if err != nil {
		t.Fatalf("the newest heartbeat was lost behind unread ones: %v", err)
	}
	if hb.Replica != ReplicaID {
		t.Errorf("heartbeat of %q accepted; only %q is the benchmark's Traefik", hb.Replica, ReplicaID)
	}
	if _, err := e.WaitHeartbeat(300*time.Millisecond, "seq 1000", func(hb natsedge.Heartbeat) bool { return hb.Seq >= 1000 }); err == nil {
		t.Error("WaitHeartbeat accepted another replica's heartbeat")
	}
}

func createBucket(ctx context.Context, url string) error {
	e := &Edge{}
	var err error
	if e.NC, err = natsConnect(harness.NATSAccess{URL: url}); err != nil {
		return err
	}
	defer e.Close()
	js, err := jetstream.New(e.NC)
	if err != nil {
		return err
	}
	_, err = js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: natsedge.DefaultBucket, History: 1})
	return err
}
