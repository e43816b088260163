package edgepub

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/edgepass/edgepass/daemon/internal/natstest"
	"github.com/edgepass/edgepass/plugin/token"
)

var (
	t0  = time.Unix(1_700_000_000, 0)
	sid = strings.Repeat("S", 43)
)

func jwks(t *testing.T) []byte {
	t.Helper()
	pub, _, _ := ed25519.GenerateKey(nil)
	b, err := token.NewKeySet(token.Key{ID: "k1", Public: pub}).MarshalJWKS()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

type observed struct {
	mu    sync.Mutex
	kinds []string
}

func (o *observed) observe(kind string, d time.Duration, err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if d <= 0 {
		kind += "(no duration)"
	}
	if err != nil {
		kind += "(error)"
	}
	o.kinds = append(o.kinds, kind)
}

func openPub(t *testing.T, js jetstream.JetStream, obs *observed) *Publisher {
	t.Helper()
	o := Options{Bucket: "edge", Lifetime: 12 * time.Hour, Now: func() time.Time { return t0 }}
	if obs != nil {
		o.Observe = obs.observe
	}
	p, err := OpenPublisher(natstest.Context(t), js, o)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPublisherWritesContractFacts(t *testing.T) {
	srv := natstest.Start(t)
	ctx := natstest.Context(t)
	obs := &observed{}
	p := openPub(t, srv.JS, obs)
	keys := jwks(t)

	if err := p.RevokeSession(ctx, sid, t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := p.RevokeUser(ctx, "user|42", t0.Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := p.SetGroups(ctx, "user|42", []string{"admins", "staff"}); err != nil {
		t.Fatal(err)
	}
	if err := p.PublishKeys(ctx, keys); err != nil {
		t.Fatal(err)
	}

	kv, _ := srv.JS.KeyValue(ctx, "edge")
	sk := token.SubjectKey("user|42")
	tests := []struct {
		key, want string
	}{
		{"revoke.session." + sid, fmt.Sprintf(`{"exp":%d}`, t0.Add(time.Hour).Unix())},
		{"revoke.user." + sk, fmt.Sprintf(`{"before":%d,"exp":%d}`, t0.Unix()-1, t0.Add(12*time.Hour).Unix()-1)},
		{"groups." + sk, fmt.Sprintf(`{"groups":["admins","staff"],"at":%d,"exp":%d}`, t0.Unix(), t0.Add(12*time.Hour).Unix())},
		{"keys", string(keys)},
	}
	for _, tc := range tests {
		e, err := kv.Get(ctx, tc.key)
		if err != nil {
			t.Errorf("Get(%s): %v", tc.key, err)
			continue
		}
		if string(e.Value()) != tc.want {
			t.Errorf("%s = %s, want %s", tc.key, e.Value(), tc.want)
		}
	}
	want := "revoke_session,revoke_user,groups,keys"
	if got := strings.Join(obs.kinds, ","); got != want {
		t.Errorf("observed %s, want %s", got, want)
	}

	st, _ := kv.Status(ctx)
	if st.TTL() != 12*time.Hour+TTLMargin || st.History() != 1 {
		t.Errorf("edge bucket ttl %s history %d, want 12h+%s and 1", st.TTL(), st.History(), TTLMargin)
	}

	// Groups the IdP reported at refresh are not an administrator's override:
	// a new login must take the IdP's current groups, not these.
	if _, ok, _ := p.GroupsOverride(ctx, "user|42"); ok {
		t.Error("GroupsOverride reported groups published from the IdP as an admin override")
	}
	if err := p.SetAdminGroups(ctx, "user|42", []string{"admins", "staff"}); err != nil {
		t.Fatal(err)
	}
	groups, ok, err := p.GroupsOverride(ctx, "user|42")
	if err != nil || !ok || strings.Join(groups, ",") != "admins,staff" {
		t.Errorf("GroupsOverride = %v %v %v", groups, ok, err)
	}
	if _, ok, _ := p.GroupsOverride(ctx, "someone-else"); ok {
		t.Error("GroupsOverride for an unknown subject reported a value")
	}
	if err := p.ClearGroups(ctx, "user|42"); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := p.GroupsOverride(ctx, "user|42"); ok {
		t.Error("GroupsOverride after ClearGroups reported a value")
	}
	if err := p.SetGroups(ctx, "nogroups", nil); err != nil {
		t.Fatal(err)
	}
	if e, _ := kv.Get(ctx, "groups."+token.SubjectKey("nogroups")); !strings.Contains(string(e.Value()), `"groups":[]`) {
		t.Errorf("empty groups written as %s, want []", e.Value())
	}
}

// A session revoked without a known expiry stays revoked for a whole lifetime.
func TestRevokeSessionWithoutExpiryLastsALifetime(t *testing.T) {
	srv := natstest.Start(t)
	ctx := natstest.Context(t)
	p := openPub(t, srv.JS, nil)
	if err := p.RevokeSession(ctx, sid, time.Time{}); err != nil {
		t.Fatal(err)
	}
	kv, _ := srv.JS.KeyValue(ctx, "edge")
	e, err := kv.Get(ctx, "revoke.session."+sid)
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf(`{"exp":%d}`, t0.Add(12*time.Hour).Unix()); string(e.Value()) != want {
		t.Errorf("fact %s, want %s", e.Value(), want)
	}
}

func TestPublisherRefusesBadInput(t *testing.T) {
	srv := natstest.Start(t)
	ctx := natstest.Context(t)
	p := openPub(t, srv.JS, nil)
	many := make([]string, MaxGroups+1)
	for i := range many {
		many[i] = "g"
	}
	tests := []struct {
		name string
		err  error
	}{
		// Attack: a sid that is a NATS wildcard or contains dots would address other keys.
		{"wildcard sid", p.RevokeSession(ctx, ">", t0)},
		{"dotted sid", p.RevokeSession(ctx, sid+".x", t0)},
		{"short sid", p.RevokeSession(ctx, "abc", t0)},
		{"empty subject revoke", p.RevokeUser(ctx, "", t0)},
		{"empty subject groups", p.SetGroups(ctx, "", []string{"a"})},
		{"too many groups", p.SetGroups(ctx, "u", many)},
		{"invalid JWKS", p.PublishKeys(ctx, []byte(`{"keys":[]}`))},
		{"not JSON", p.PublishKeys(ctx, []byte(`garbage`))},
	}
	for _, tc := range tests {
		if tc.err == nil {
			t.Errorf("%s: accepted, want a refusal", tc.name)
		}
	}
	kv, _ := srv.JS.KeyValue(ctx, "edge")
	if keys, _ := kv.Keys(ctx); len(keys) != 0 {
		t.Errorf("refused input left keys %v in the bucket", keys)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestWatcherFeedsState(t *testing.T) {
	srv := natstest.Start(t)
	ctx := natstest.Context(t)
	now := time.Now()
	p, err := OpenPublisher(ctx, srv.JS, Options{Bucket: "edge", Lifetime: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	// A fact published before the watcher starts is replayed.
	if err := p.RevokeSession(ctx, sid, now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	w, err := Watch(ctx, srv.JS, "edge", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	select {
	case <-w.Synced():
	case <-time.After(5 * time.Second):
		t.Fatal("watcher never synced")
	}
	st := w.State()
	if !st.Synced() || !st.Revoked(sid, "", now.Unix(), now) {
		t.Fatal("replayed session revocation not applied")
	}

	// Live facts.
	before := now.Add(-time.Minute)
	_ = p.RevokeUser(ctx, "bob", before)
	_ = p.SetGroups(ctx, "carol", []string{"ops"})
	_ = p.PublishKeys(ctx, jwks(t))
	waitFor(t, "live facts", func() bool { return st.Keys() != nil && st.Stats().Groups == 1 && st.Stats().Users == 1 })
	bob := token.SubjectKey("bob")
	if !st.Revoked("", bob, before.Unix(), now) || st.Revoked("", bob, now.Unix(), now) {
		t.Error("user revocation must refuse tokens issued at or before `before` only")
	}
	if g, ok := st.GroupsOverride(token.SubjectKey("carol"), now.Unix()-10); !ok || g[0] != "ops" {
		t.Errorf("GroupsOverride = %v %v", g, ok)
	}

	// Attack: a forged or corrupt value in the bucket is ignored and counted, not fatal.
	kv, _ := srv.JS.KeyValue(ctx, "edge")
	rejected := st.Stats().Rejected
	_, _ = kv.Put(ctx, "revoke.user."+token.SubjectKey("eve"), []byte(`{"before":"yesterday"}`))
	_, _ = kv.Put(ctx, "something.else", []byte(`{}`))
	waitFor(t, "rejections", func() bool { return st.Stats().Rejected == rejected+2 })

	// Deleting a fact lifts it.
	if err := kv.Delete(ctx, "revoke.session."+sid); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "delete applied", func() bool { return !st.Revoked(sid, "", now.Unix(), now) })
	if err := p.ClearGroups(ctx, "carol"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "purge applied", func() bool { _, ok := st.GroupsOverride(token.SubjectKey("carol"), 1); return !ok })
	if st.LastSeq() == 0 {
		t.Error("LastSeq not tracked")
	}
}

func TestWatchMissingBucket(t *testing.T) {
	srv := natstest.Start(t)
	if _, err := Watch(context.Background(), srv.JS, "nope", nil); err == nil || !strings.Contains(err.Error(), "nope") {
		t.Errorf("Watch(missing bucket) = %v, want an error naming it", err)
	}
}

func hb(replica string, seq uint64) []byte {
	b, _ := json.Marshal(Heartbeat{Replica: replica, Bucket: "edge", Seq: seq, Synced: true, HeardAgoMs: 12, RevokedSessions: 1, At: t0.UnixMilli()})
	return b
}

func TestParseHeartbeat(t *testing.T) {
	tests := []struct {
		name string
		data string
		ok   bool
	}{
		{"contract example", `{"replica":"traefik-0","bucket":"edge","seq":42,"synced":true,"heardAgoMs":123,"revokedSessions":1,"revokedUsers":2,"groups":3,"rejected":0,"at":1700000000000}`, true},
		{"bucket omitted", `{"replica":"r"}`, true},
		{"not JSON", `hello`, false},
		{"JSON array", `[1]`, false},
		{"missing replica", `{"bucket":"edge"}`, false},
		{"other bucket", `{"replica":"r","bucket":"other"}`, false},
		{"control characters in replica", `{"replica":"r\u001b[31m"}`, false},
		{"huge replica id", `{"replica":"` + strings.Repeat("r", MaxReplicaID+1) + `"}`, false},
		{"negative count", `{"replica":"r","groups":-1}`, false},
		{"oversized", `{"replica":"r","pad":"` + strings.Repeat("x", MaxHeartbeatSize) + `"}`, false},
		{"wrong types", `{"replica":"r","seq":"ten"}`, false},
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
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, data []byte) {
		h, err := parseHeartbeat(data, "edge")
		if err != nil {
			return
		}
		if h.Replica == "" || len(h.Replica) > MaxReplicaID || h.Bucket != "edge" || hasControl(h.Replica) {
			t.Fatalf("accepted invalid heartbeat %+v", h)
		}
	})
}

func TestHeartbeatsOverNATS(t *testing.T) {
	srv := natstest.Start(t)
	var mu sync.Mutex
	now := t0
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	h, err := SubscribeHeartbeats(srv.NC, "edge", HeartbeatOptions{Now: clock, LastSeq: func() uint64 { return 10 }})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	for _, m := range [][]byte{hb("b", 4), hb("a", 10), hb("b", 7), []byte("junk")} {
		if err := srv.NC.Publish("edgepass.heartbeat.edge", m); err != nil {
			t.Fatal(err)
		}
	}
	_ = srv.NC.Publish("edgepass.heartbeat.other", hb("c", 1)) // another bucket's edges
	_ = srv.NC.Flush()
	waitFor(t, "heartbeats", func() bool { return len(h.List()) == 2 && h.Rejected() == 1 })
	list := h.List()
	if list[0].Replica != "a" || list[1].Replica != "b" || list[1].Seq != 7 {
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

func TestHeartbeatsRefuseReplicaFlood(t *testing.T) {
	// Attack: a client allowed to publish heartbeats invents replica ids to
	// exhaust the daemon's memory.
	h := &Heartbeats{bucket: "edge", now: func() time.Time { return t0 }, latest: map[string]EdgeStatus{}}
	for i := 0; i < MaxReplicas+50; i++ {
		_ = h.Record(hb(fmt.Sprintf("r%d", i), 1))
	}
	if n := len(h.List()); n != MaxReplicas {
		t.Errorf("tracking %d replicas, want the cap %d", n, MaxReplicas)
	}
	if h.Rejected() != 50 {
		t.Errorf("rejected %d, want 50", h.Rejected())
	}
	if err := h.Record(hb("r0", 2)); err != nil {
		t.Errorf("known replica refused at the cap: %v", err)
	}
}
