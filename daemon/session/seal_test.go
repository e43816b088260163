package session

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/edgepass/edgepass/daemon/internal/horizontest"
	"github.com/edgepass/edgepass/daemon/internal/natstest"
	"github.com/edgepass/edgepass/daemon/seal"
)

func TestSealedValueCannotMoveToAnotherSession(t *testing.T) {
	// Attack: a NATS writer copies alice's sealed refresh token into an entry it controls (or mallory's session) to have the daemon use it.
	srv := natstest.Start(t)
	ctx := natstest.Context(t)
	st := openStore(t, srv)
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
	st := openStore(t, srv)
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

// Sessions issued under a longer lifetime must outlive a cut of
// session.lifetime: they are what refresh re-checks at the IdP.
func TestSessionBucketFollowsHorizon(t *testing.T) {
	srv := natstest.Start(t)
	ctx := natstest.Context(t)
	h := horizontest.New(12 * time.Hour)
	st, err := OpenStore(ctx, srv.JS, StoreOptions{Bucket: "sessions", Lifetime: time.Hour, Horizon: h, Seal: testSeal})
	if err != nil {
		t.Fatal(err)
	}
	horizontest.Run(t, srv.JS, "sessions", h, []horizontest.Step{
		{Name: "opened under a 12h horizon", Horizon: 12 * time.Hour, Do: func() error { return nil }, Want: 12 * time.Hour},
		{Name: "a longer lifetime is raised before the write", Horizon: 24 * time.Hour, Do: func() error { return st.Put(ctx, newSession(t, "a", time.Now())) }, Want: 24 * time.Hour},
		{Name: "a write never lowers it", Horizon: time.Hour, Do: func() error { return st.Put(ctx, newSession(t, "b", time.Now())) }, Want: 24 * time.Hour},
		{Name: "reopening with a shorter lifetime never lowers it", Horizon: time.Hour, Do: func() error {
			_, err := OpenStore(ctx, srv.JS, StoreOptions{Bucket: "sessions", Lifetime: time.Hour, Seal: testSeal})
			return err
		}, Want: 24 * time.Hour},
		{Name: "the maintenance tick lowers it once the horizon dropped", Horizon: time.Hour, Do: func() error { return st.FitTTL(ctx) }, Want: time.Hour},
	})
}
