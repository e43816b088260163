package session

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgepass/edgepass/daemon/internal/natstest"
	"github.com/edgepass/edgepass/daemon/seal"
)

func TestSealedValueCannotMoveToAnotherSession(t *testing.T) {
	// Attack: a NATS writer copies alice's sealed refresh token into an entry it controls (or mallory's session) to have the daemon use it.
	srv := natstest.Start(t)
	ctx := natstest.Context(t)
	st, err := OpenStore(ctx, srv.JS, StoreOptions{Bucket: "sessions", Lifetime: time.Hour, Seal: testSeal})
	if err != nil {
		t.Fatal(err)
	}
	alice := newSession(t, "alice", time.Now())
	alice.IDToken = "id-token-of-alice"
	mallory := newSession(t, "mallory", time.Now())
	for _, s := range []*Session{alice, mallory} {
		if err := st.Put(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	kv, _ := srv.JS.KeyValue(ctx, "sessions")
	ea, _ := kv.Get(ctx, alice.ID)
	em, _ := kv.Get(ctx, mallory.ID)
	var rawAlice, rawMallory map[string]any
	_ = json.Unmarshal(ea.Value(), &rawAlice)
	_ = json.Unmarshal(em.Value(), &rawMallory)
	for _, field := range []string{"refreshToken", "idToken"} {
		forged := map[string]any{}
		for k, v := range rawMallory {
			forged[k] = v
		}
		forged[field] = rawAlice[field]
		data, _ := json.Marshal(forged)
		if _, err := kv.Put(ctx, mallory.ID, data); err != nil {
			t.Fatal(err)
		}
		got, _, err := st.Get(ctx, mallory.ID)
		if !errors.Is(err, seal.ErrTampered) {
			t.Errorf("%s moved from alice to mallory: Get = %+v, %v; want seal.ErrTampered", field, got, err)
		}
		list, err := st.List(ctx, "mallory")
		if err != nil || len(list) != 0 {
			t.Errorf("%s moved: List = %v, %v; want the damaged entry skipped", field, list, err)
		}
	}
}

func TestRefreshTokenSealedAtRest(t *testing.T) {
	srv := natstest.Start(t)
	ctx := natstest.Context(t)
	st, err := OpenStore(ctx, srv.JS, StoreOptions{Bucket: "sessions", Lifetime: time.Hour, Seal: testSeal})
	if err != nil {
		t.Fatal(err)
	}
	s := newSession(t, "alice", time.Now())
	s.RefreshToken = "refresh-token-secret-0123456789"
	s.IDToken = "id-token-secret-0123456789"
	if err := st.Put(ctx, s); err != nil {
		t.Fatal(err)
	}
	kv, _ := srv.JS.KeyValue(ctx, "sessions")
	e, _ := kv.Get(ctx, s.ID)
	if raw := string(e.Value()); strings.Contains(raw, "secret-0123456789") || !strings.Contains(raw, "es1.") {
		t.Fatalf("stored session holds its tokens in clear: %s", raw)
	}
	got, _, err := st.Get(ctx, s.ID)
	if err != nil || got.RefreshToken != s.RefreshToken || got.IDToken != s.IDToken {
		t.Fatalf("Get = %+v, %v; want the tokens back", got, err)
	}
	list, err := st.List(ctx, "alice")
	if err != nil || len(list) != 1 || list[0].RefreshToken != s.RefreshToken {
		t.Fatalf("List = %+v, %v", list, err)
	}

	// A session an older edgepass stored in clear is still read (and sealed on its next write).
	legacy := newSession(t, "bob", time.Now())
	data, _ := json.Marshal(legacy)
	if _, err := kv.Put(ctx, legacy.ID, data); err != nil {
		t.Fatal(err)
	}
	got, rev, err := st.Get(ctx, legacy.ID)
	if err != nil || got.RefreshToken != "rt-bob" {
		t.Fatalf("legacy Get = %+v, %v", got, err)
	}
	if _, err := st.Update(ctx, got, rev); err != nil {
		t.Fatal(err)
	}
	if e, _ := kv.Get(ctx, legacy.ID); strings.Contains(string(e.Value()), "rt-bob") {
		t.Error("legacy refresh token still in clear after a write")
	}

	// Another replica with another encryption key says so.
	other, _, _ := seal.Generate()
	st2, err := OpenStore(ctx, srv.JS, StoreOptions{Bucket: "sessions", Lifetime: time.Hour, Seal: other})
	if err != nil {
		t.Fatal(err)
	}
	for name, err := range map[string]error{"Get": func() error { _, _, err := st2.Get(ctx, s.ID); return err }(), "List": func() error { _, err := st2.List(ctx, ""); return err }()} {
		var wk *seal.WrongKeyError
		if !errors.As(err, &wk) || !strings.Contains(err.Error(), "give every daemon replica the same keys.encryptionKeyFile") {
			t.Errorf("%s with another encryption key = %v, want a WrongKeyError that says what to do", name, err)
		}
	}
}

// settable is a Horizon tests move.
type settable struct {
	mu sync.Mutex
	d  time.Duration
}

func (h *settable) set(d time.Duration) { h.mu.Lock(); h.d = d; h.mu.Unlock() }
func (h *settable) Horizon() time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.d
}
func (h *settable) LoadHorizon(context.Context) (time.Duration, error) { return h.Horizon(), nil }

func bucketTTL(t *testing.T, srv *natstest.Server, name string) time.Duration {
	t.Helper()
	kv, err := srv.JS.KeyValue(natstest.Context(t), name)
	if err != nil {
		t.Fatal(err)
	}
	st, err := kv.Status(natstest.Context(t))
	if err != nil {
		t.Fatal(err)
	}
	return st.TTL()
}

// Sessions issued under a longer lifetime must outlive a cut of
// session.lifetime: they are what refresh re-checks at the IdP.
func TestSessionBucketFollowsHorizon(t *testing.T) {
	srv := natstest.Start(t)
	ctx := natstest.Context(t)
	h := &settable{d: 12 * time.Hour}
	st, err := OpenStore(ctx, srv.JS, StoreOptions{Bucket: "sessions", Lifetime: time.Hour, Horizon: h, Seal: testSeal})
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name    string
		horizon time.Duration
		do      func() error
		want    time.Duration
	}{
		{"opened under a 12h horizon", 12 * time.Hour, func() error { return nil }, 12 * time.Hour},
		{"a longer lifetime is raised before the write", 24 * time.Hour, func() error { return st.Put(ctx, newSession(t, "a", time.Now())) }, 24 * time.Hour},
		{"a write never lowers it", time.Hour, func() error { return st.Put(ctx, newSession(t, "b", time.Now())) }, 24 * time.Hour},
		{"reopening with a shorter lifetime never lowers it", time.Hour, func() error {
			_, err := OpenStore(ctx, srv.JS, StoreOptions{Bucket: "sessions", Lifetime: time.Hour, Seal: testSeal})
			return err
		}, 24 * time.Hour},
		{"the maintenance tick lowers it once the horizon dropped", time.Hour, func() error { return st.FitTTL(ctx) }, time.Hour},
	}
	for _, s := range steps {
		h.set(s.horizon)
		if err := s.do(); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if got := bucketTTL(t, srv, "sessions"); got != s.want {
			t.Errorf("%s: bucket max age %s, want %s", s.name, got, s.want)
		}
	}
}
