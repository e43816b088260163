package edgepub

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgepass/edgepass/daemon/internal/natstest"
	"github.com/edgepass/edgepass/daemon/internal/poll"
)

var hbT0 = time.Unix(1_700_000_000, 0)

func hb(replica string, seq uint64) []byte {
	b, _ := json.Marshal(Heartbeat{Replica: replica, Bucket: "edge", Seq: seq, Synced: true, HeardAgoMs: 12, RevokedSessions: 1, At: hbT0.UnixMilli()})
	return b
}

func hbAs(edge, replica string, seq uint64) []byte {
	b, _ := json.Marshal(Heartbeat{Edge: edge, Replica: replica, Bucket: "edge", Seq: seq, Synced: true, At: hbT0.UnixMilli()})
	return b
}

func fixedHeartbeats(now *time.Time) *Heartbeats {
	return newHeartbeats("edge", HeartbeatOptions{Now: func() time.Time { return *now }})
}

func TestParseHeartbeat(t *testing.T) {
	tests := []struct {
		name string
		data string
		ok   bool
	}{
		{"contract example", `{"edge":"a","replica":"traefik-0","bucket":"edge","seq":42,"synced":true,"heardAgoMs":123,"revokedSessions":1,"revokedUsers":2,"groups":3,"rejected":0,"at":1700000000000}`, true},
		{"bucket and edge omitted", `{"replica":"r"}`, true},
		{"not JSON", `hello`, false},
		{"JSON array", `[1]`, false},
		{"missing replica", `{"bucket":"edge"}`, false},
		{"other bucket", `{"replica":"r","bucket":"other"}`, false},
		{"control characters in replica", `{"replica":"r\u001b[31m"}`, false},
		{"huge replica id", `{"replica":"` + strings.Repeat("r", MaxReplicaID+1) + `"}`, false},
		{"invalid edge name", `{"replica":"r","edge":"a.b"}`, false},
		{"negative count", `{"replica":"r","groups":-1}`, false},
		{"oversized", `{"replica":"r","pad":"` + strings.Repeat("x", MaxHeartbeatSize) + `"}`, false},
		{"wrong types", `{"replica":"r","seq":"ten"}`, false},
		{"plugin version", `{"replica":"r","version":"v0.2.0"}`, true},
		{"control characters in version", `{"replica":"r","version":"v1\u001b[2J"}`, false},
		{"huge version", `{"replica":"r","version":"` + strings.Repeat("v", MaxReplicaID+1) + `"}`, false},
		{"refusals by reason", `{"replica":"r","refusals":{"not_allowed":3,"session_revoked":1}}`, true},
		{"invented refusal reason", `{"replica":"r","refusals":{"x\"} 1\nfake_metric":1}}`, false},
		{"negative refusal count", `{"replica":"r","refusals":{"not_allowed":-1}}`, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseHeartbeat([]byte(tc.data), "edge")
			if (err == nil) != tc.ok {
				t.Fatalf("parseHeartbeat err = %v, want ok=%v", err, tc.ok)
			}
		})
	}
}

func FuzzParseHeartbeat(f *testing.F) {
	f.Add(hb("traefik-0", 5))
	f.Add([]byte(`{"replica":"","seq":-1}`))
	f.Add([]byte(`{"replica":"r","bucket":"x"}`))
	f.Add([]byte(`{"replica":"r","edge":"x.>"}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, data []byte) {
		h, err := parseHeartbeat(data, "edge")
		if err != nil {
			return
		}
		if h.Replica == "" || len(h.Replica) > MaxReplicaID || h.Bucket != "edge" || hasControl(h.Replica) || strings.ContainsAny(h.Edge, ".*> ") {
			t.Fatalf("accepted invalid heartbeat %+v", h)
		}
	})
}

func TestHeartbeatsOverNATS(t *testing.T) {
	srv := natstest.Start(t)
	var mu sync.Mutex
	now := hbT0
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	h, err := SubscribeHeartbeats(srv.NC, "edge", HeartbeatOptions{Now: clock, LastSeq: func() uint64 { return 10 }})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	for _, m := range [][]byte{hb("b", 4), hb("a", 10), hb("b", 7), []byte("junk")} {
		if err := srv.NC.Publish("edgepass.heartbeat.edge.e1", m); err != nil {
			t.Fatal(err)
		}
	}
	_ = srv.NC.Publish("edgepass.heartbeat.other.e1", hb("c", 1)) // another bucket's edges
	_ = srv.NC.Publish("edgepass.heartbeat.edge", hb("d", 1))     // the old subject, without an edge name
	_ = srv.NC.Flush()
	poll.Until(t, 5*time.Second, "heartbeats", func() bool { return len(h.List()) == 2 && h.Rejected() == 1 })
	list := h.List()
	if list[0].Replica != "a" || list[1].Replica != "b" || list[1].Seq != 7 || list[0].Edge != "e1" || list[1].Edge != "e1" {
		t.Fatalf("List = %+v", list)
	}
	if list[0].Behind != 0 || list[1].Behind != 3 || list[0].Stale {
		t.Errorf("behind/stale = %d %d %v", list[0].Behind, list[1].Behind, list[0].Stale)
	}
	mu.Lock()
	now = now.Add(HeartbeatStale + time.Second)
	mu.Unlock()
	if !h.List()[0].Stale {
		t.Error("replica not marked stale after missing heartbeats")
	}
	mu.Lock()
	now = now.Add(HeartbeatExpiry)
	mu.Unlock()
	if n := len(h.List()); n != 0 {
		t.Errorf("%d replicas listed after expiry, want 0", n)
	}
}

// TestHeartbeatCannotImpersonateAnotherEdge: the edge name is the subject's,
// which the credential's permissions pin; the payload cannot move a report
// to another edge.
func TestHeartbeatCannotImpersonateAnotherEdge(t *testing.T) {
	now := hbT0
	tests := []struct {
		name     string
		subject  string // the edge name in the subject
		payload  []byte
		accepted bool
	}{
		// Attack: edge a's credential claims to be edge b in the payload.
		{"payload names another edge", "a", hbAs("b", "r1", 1), false},
		// Attack: a subject token that is not an edge name (wildcard, empty).
		{"wildcard subject token", ">", hbAs("", "r1", 1), false},
		{"empty subject token", "", hbAs("", "r1", 1), false},
		{"payload without edge takes the subject's", "a", hbAs("", "r2", 1), true},
		{"payload naming its own edge", "a", hbAs("a", "r3", 1), true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := fixedHeartbeats(&now)
			err := h.Record(tc.subject, tc.payload)
			if (err == nil) != tc.accepted {
				t.Fatalf("Record(%q) err = %v, want accepted=%v", tc.subject, err, tc.accepted)
			}
			for _, st := range h.List() {
				if st.Edge != tc.subject {
					t.Fatalf("replica %q listed under edge %q, heard on edge %q's subject", st.Replica, st.Edge, tc.subject)
				}
			}
		})
	}
}

// TestHeartbeatsOverNATSTakeTheEdgeFromTheSubject checks the subscription
// end to end: a payload naming edge b on edge a's subject is refused.
func TestHeartbeatsOverNATSTakeTheEdgeFromTheSubject(t *testing.T) {
	srv := natstest.Start(t)
	h, err := SubscribeHeartbeats(srv.NC, "edge", HeartbeatOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	_ = srv.NC.Publish("edgepass.heartbeat.edge.a", hbAs("b", "forged", 1))
	_ = srv.NC.Publish("edgepass.heartbeat.edge.a", hbAs("", "honest", 2))
	_ = srv.NC.Flush()
	poll.Until(t, 5*time.Second, "heartbeats", func() bool { return len(h.List()) == 1 && h.Rejected() == 1 })
	if l := h.List(); l[0].Edge != "a" || l[0].Replica != "honest" {
		t.Fatalf("List = %+v", l)
	}
}

// TestHeartbeatsRefuseReplicaFlood: a credential inventing replica ids keeps
// at most MaxReplicasPerEdge entries, its own oldest going first, and never
// crowds out another edge's replicas.
func TestHeartbeatsRefuseReplicaFlood(t *testing.T) {
	now := hbT0
	h := fixedHeartbeats(&now)
	// Another edge reports first.
	if err := h.Record("b", hb("b-0", 1)); err != nil {
		t.Fatal(err)
	}
	// Attack: edge a's credential publishes thousands of fake replica ids.
	for i := 0; i < 5000; i++ {
		now = now.Add(time.Millisecond)
		if err := h.Record("a", hb(fmt.Sprintf("fake-%d", i), 1)); err != nil {
			t.Fatalf("heartbeat %d: %v", i, err)
		}
	}
	perEdge := map[string]int{}
	for _, st := range h.List() {
		perEdge[st.Edge]++
	}
	if perEdge["a"] != MaxReplicasPerEdge || perEdge["b"] != 1 {
		t.Fatalf("replicas per edge %v, want a capped at %d and b kept", perEdge, MaxReplicasPerEdge)
	}
	// The newest of edge a are the ones kept.
	for _, st := range h.List() {
		var n int
		fmt.Sscanf(st.Replica, "fake-%d", &n)
		if st.Edge == "a" && n < 5000-MaxReplicasPerEdge {
			t.Fatalf("kept the old replica %s over newer ones", st.Replica)
		}
	}
	// Edge b's replicas still report and new ones are accepted.
	if err := h.Record("b", hb("b-1", 2)); err != nil {
		t.Fatalf("edge b crowded out: %v", err)
	}
}

// TestHeartbeatsBoundTotalReplicas: many edge names together cannot grow
// the collector past MaxReplicas.
func TestHeartbeatsBoundTotalReplicas(t *testing.T) {
	now := hbT0
	h := fixedHeartbeats(&now)
	rejected := 0
	for e := 0; e*MaxReplicasPerEdge < MaxReplicas+100; e++ {
		for r := 0; r < MaxReplicasPerEdge; r++ {
			if h.Record(fmt.Sprintf("e%d", e), hb(fmt.Sprintf("r%d", r), 1)) != nil {
				rejected++
			}
		}
	}
	if n := len(h.List()); n != MaxReplicas {
		t.Errorf("tracking %d replicas, want the cap %d", n, MaxReplicas)
	}
	if rejected == 0 || h.Rejected() != uint64(rejected) {
		t.Errorf("rejected %d (counted %d), want refusals past the cap", rejected, h.Rejected())
	}
	if err := h.Record("e0", hb("r0", 2)); err != nil {
		t.Errorf("known replica refused at the cap: %v", err)
	}
}
