package session

import (
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/edgepass/edgepass/daemon/internal/natstest"
	"github.com/edgepass/edgepass/daemon/seal"
)

var testSeal = func() *seal.Key {
	k, _, err := seal.Generate()
	if err != nil {
		panic(err)
	}
	return k
}()

func newSession(t *testing.T, sub string, issued time.Time) *Session {
	t.Helper()
	return &Session{ID: NewID(), Subject: sub, Email: sub + "@example.com", Groups: []string{"staff"},
		IssuedAt: issued, ExpiresAt: issued.Add(time.Hour), RefreshToken: "rt-" + sub}
}

// openStore opens the sessions bucket on srv: a one-hour lifetime, values
// sealed with testSeal.
func openStore(t *testing.T, srv *natstest.Server) *Store {
	t.Helper()
	st, err := OpenStore(natstest.Context(t), srv.JS, StoreOptions{Bucket: "sessions", Lifetime: time.Hour, Seal: testSeal})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func TestNewID(t *testing.T) {
	seen := map[string]bool{}
	for i := 0; i < 1000; i++ {
		id := NewID()
		if len(id) != 43 || !ValidID(id) {
			t.Fatalf("NewID() = %q: want 43 base64url characters", id)
		}
		if seen[id] {
			t.Fatalf("NewID() repeated %q", id)
		}
		seen[id] = true
	}
}

func TestValidIDRefusesKeyInjection(t *testing.T) {
	// Attack: an admin API path or a token's sid crafted to address other KV
	// keys (wildcards, dots, the edge's key names) or to overflow.
	tests := []struct {
		id   string
		want bool
	}{
		{strings.Repeat("A", 43), true},
		{strings.Repeat("a", 22), true},
		{strings.Repeat("a", 21), false},
		{strings.Repeat("a", 129), false},
		{"", false},
		{"*", false},
		{">", false},
		{strings.Repeat("a", 30) + ".>", false},
		{strings.Repeat("a", 30) + "/x", false},
		{strings.Repeat("a", 30) + "=", false},
		{strings.Repeat("a", 30) + " ", false},
		{strings.Repeat("a", 30) + "é", false},
	}
	for _, tc := range tests {
		if got := ValidID(tc.id); got != tc.want {
			t.Errorf("ValidID(%q) = %v, want %v", tc.id, got, tc.want)
		}
	}
}

func TestStoreCRUD(t *testing.T) {
	srv := natstest.Start(t)
	ctx := natstest.Context(t)
	now := time.Now()
	st := openStore(t, srv)
	alice := newSession(t, "alice", now.Add(-time.Minute))
	alice2 := newSession(t, "alice", now)
	bob := newSession(t, "bob", now.Add(-2*time.Minute))
	expired := newSession(t, "carol", now.Add(-2*time.Hour))
	for _, s := range []*Session{alice, alice2, bob, expired} {
		if err := st.Put(ctx, s); err != nil {
			t.Fatalf("Put: %v", err)
		}
	}

	got, rev, err := st.Get(ctx, alice.ID)
	if err != nil || got.Subject != "alice" || got.RefreshToken != "rt-alice" || rev == 0 {
		t.Fatalf("Get = %+v, %d, %v", got, rev, err)
	}

	// Update with the right revision wins, a stale revision conflicts.
	got.Groups = []string{"admins"}
	rev2, err := st.Update(ctx, got, rev)
	if err != nil {
		t.Fatalf("Update: %v", err)
	}
	got.Groups = []string{"stale"}
	if _, err := st.Update(ctx, got, rev); !errors.Is(err, ErrConflict) {
		t.Errorf("Update(stale rev) = %v, want ErrConflict", err)
	}
	again, rev3, _ := st.Get(ctx, alice.ID)
	if rev3 != rev2 || len(again.Groups) != 1 || again.Groups[0] != "admins" {
		t.Errorf("after Update: %v rev %d, want [admins] rev %d", again.Groups, rev3, rev2)
	}

	tests := []struct {
		subject string
		want    []string
	}{
		{"", []string{bob.ID, alice.ID, alice2.ID}}, // oldest first, expired left out
		{"alice", []string{alice.ID, alice2.ID}},
		{"bob", []string{bob.ID}},
		{"carol", nil},
		{"nobody", nil},
	}
	for _, tc := range tests {
		list, err := st.List(ctx, tc.subject)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, s := range list {
			ids = append(ids, s.ID)
		}
		if strings.Join(ids, ",") != strings.Join(tc.want, ",") {
			t.Errorf("List(%q) = %v, want %v", tc.subject, ids, tc.want)
		}
	}

	if _, _, err := st.Get(ctx, expired.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get(expired) = %v, want ErrNotFound", err)
	}
	_, bobRev, err := st.Get(ctx, bob.ID)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Delete(ctx, bob.ID); err != nil {
		t.Fatal(err)
	}
	if _, _, err := st.Get(ctx, bob.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get(deleted) = %v, want ErrNotFound", err)
	}
	// A replica still holding the revision it read must not bring it back.
	if _, err := st.Update(ctx, bob, bobRev); !errors.Is(err, ErrConflict) {
		t.Errorf("Update(deleted) = %v, want ErrConflict", err)
	}
	if _, _, err := st.Get(ctx, bob.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("Update resurrected a deleted session: %v", err)
	}
	if err := st.Delete(ctx, bob.ID); err != nil {
		t.Errorf("Delete(missing) = %v, want nil", err)
	}
	if _, _, err := st.Get(ctx, "$KV.sessions.>"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get(wildcard) = %v, want ErrNotFound", err)
	}
	if err := st.Put(ctx, &Session{ID: "short", Subject: "x", ExpiresAt: now.Add(time.Hour)}); err == nil {
		t.Error("Put(invalid id) = nil, want an error")
	}
	if err := st.Put(ctx, &Session{ID: alice.ID, ExpiresAt: now.Add(time.Hour)}); err == nil {
		t.Error("Put(no subject) = nil, want an error")
	}
}

func TestStoreSurvivesRestart(t *testing.T) {
	srv := natstest.Start(t)
	ctx := natstest.Context(t)
	st := openStore(t, srv)
	var ids []string
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := newSession(t, "user", time.Now())
			if err := st.Put(ctx, s); err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			ids = append(ids, s.ID)
			mu.Unlock()
		}()
	}
	wg.Wait()

	srv = srv.Restart()
	st = openStore(t, srv)
	for _, id := range ids {
		if _, _, err := st.Get(ctx, id); err != nil {
			t.Errorf("after restart Get(%s): %v", id, err)
		}
	}
	list, _ := st.List(ctx, "user")
	if len(list) != len(ids) {
		t.Errorf("after restart List = %d sessions, want %d", len(list), len(ids))
	}
}

func TestOpenStoreSetsBucketTTL(t *testing.T) {
	srv := natstest.Start(t)
	ctx := natstest.Context(t)
	if _, err := OpenStore(ctx, srv.JS, StoreOptions{Bucket: "sessions", Lifetime: time.Hour, Seal: testSeal}); err != nil {
		t.Fatal(err)
	}
	// A new lifetime in the configuration updates the existing bucket.
	if _, err := OpenStore(ctx, srv.JS, StoreOptions{Bucket: "sessions", Lifetime: 2 * time.Hour, Seal: testSeal}); err != nil {
		t.Fatal(err)
	}
	kv, _ := srv.JS.KeyValue(ctx, "sessions")
	status, err := kv.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if status.TTL() != 2*time.Hour || status.History() != 1 {
		t.Errorf("bucket TTL %s history %d, want 2h and 1", status.TTL(), status.History())
	}
	if info := status.(*jetstream.KeyValueBucketStatus).StreamInfo(); info.Config.Storage != jetstream.FileStorage {
		t.Errorf("storage = %s, want file", info.Config.Storage)
	}
	for _, o := range []StoreOptions{{Lifetime: time.Hour, Seal: testSeal}, {Bucket: "x", Seal: testSeal}, {Bucket: "x", Lifetime: time.Hour}} {
		if _, err := OpenStore(ctx, srv.JS, o); err == nil {
			t.Errorf("OpenStore(%+v) = nil error", o)
		}
	}
}
