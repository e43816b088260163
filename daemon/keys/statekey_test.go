package keys

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/edgepass/edgepass/daemon/internal/natstest"
	"github.com/edgepass/edgepass/daemon/seal"
)

// openFollowerless opens a replica that does not follow the ring's changes
// (no Start): it sees another replica's rotation only by reading the ring
// again.
func openFollowerless(t *testing.T, srv *natstest.Server, clk *clock) *Ring {
	t.Helper()
	r, err := Open(natstest.Context(t), srv.JS, Options{Bucket: "keys", Lifetime: time.Hour, ClockSkew: time.Minute, Issuer: issuer, Seal: testSeal, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// Pending logins travel sealed in the browser; any replica must open what
// another sealed, also right after a rotation it has not followed yet, and
// logins sealed before a rotation must keep opening until they expire.
func TestLoginStateKeySharedAndRotated(t *testing.T) {
	srv := natstest.Start(t)
	ctx := natstest.Context(t)
	clk := newClock()
	a := open(t, srv.JS, clk, nil)
	b := openFollowerless(t, srv, clk)
	sa, sb := a.LoginStateSealer(), b.LoginStateSealer()

	before := sa.Seal([]byte("pending login"), "state-1")
	if got, err := sb.Open(before, "state-1"); err != nil || string(got) != "pending login" {
		t.Fatalf("another replica opens %q, %v; want the sealed login", got, err)
	}
	if _, err := sb.Open(before, "state-2"); err == nil {
		t.Fatal("a sealed login opened under another state")
	}

	clk.Add(time.Minute)
	oldID := a.current().stateKeys[0].ID()
	newID, err := a.RotateLoginStateKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if newID == oldID || a.current().stateKeys[0].ID() != newID {
		t.Fatalf("rotation: current key %s, returned %s, old %s", a.current().stateKeys[0].ID(), newID, oldID)
	}
	after := sa.Seal([]byte("later login"), "state-3")
	if strings.Contains(after, oldID) || !strings.Contains(after, newID) {
		t.Fatalf("sealed after the rotation with the wrong key: %s", after)
	}
	// b never followed the rotation: it reads the ring again for the new key.
	if got, err := sb.Open(after, "state-3"); err != nil || string(got) != "later login" {
		t.Fatalf("replica behind the rotation opens %q, %v", got, err)
	}
	for name, r := range map[string]*Ring{"rotating replica": a, "other replica": b} {
		if got, err := r.LoginStateSealer().Open(before, "state-1"); err != nil || string(got) != "pending login" {
			t.Fatalf("%s: a login sealed before the rotation opens %q, %v; want it to keep working", name, got, err)
		}
	}

	// Once no login sealed with the old key can still be pending, it goes.
	clk.Add(LoginStateKeyRetention + time.Minute)
	if err := a.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	if n := len(a.current().stateKeys); n != 1 {
		t.Fatalf("%d login-state keys after the retention, want 1", n)
	}
	c := openFollowerless(t, srv, clk)
	_, err = c.LoginStateSealer().Open(before, "state-1")
	if err == nil || !strings.Contains(err.Error(), "login-state key") {
		t.Fatalf("a login sealed with a dropped key: %v; want an error naming the login-state key", err)
	}
	if got, err := c.LoginStateSealer().Open(after, "state-3"); err != nil || string(got) != "later login" {
		t.Fatalf("current key: %q, %v", got, err)
	}
}

func TestLoginStateKeyRotatesOnScheduleAndWithTheSigningKey(t *testing.T) {
	srv := natstest.Start(t)
	ctx := natstest.Context(t)
	clk := newClock()
	r := open(t, srv.JS, clk, nil)
	first := r.current().stateKeys[0].ID()

	clk.Add(time.Hour)
	if err := r.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	if got := r.current().stateKeys[0].ID(); got != first {
		t.Fatalf("rotated after an hour (%s), want only every %s", got, LoginStateKeyRotation)
	}
	clk.Add(LoginStateKeyRotation)
	if err := r.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	second := r.current().stateKeys[0].ID()
	if second == first {
		t.Fatalf("login-state key not rotated after %s", LoginStateKeyRotation)
	}
	// `edgepass keys rotate` rotates it too.
	clk.Add(time.Minute)
	if _, err := r.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	if got := r.current().stateKeys[0].ID(); got == second {
		t.Fatal("Rotate left the login-state key as it was")
	}
	// Both replaced keys were replaced less than the retention ago.
	if n := len(r.current().stateKeys); n != 3 {
		t.Fatalf("%d login-state keys, want the current one and the two it replaced within the hour", n)
	}
	// Two rotations within one second: the later key seals.
	id, err := r.RotateLoginStateKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := r.current().stateKeys[0].ID(); got != id {
		t.Fatalf("current login-state key %s after a rotation in the same second, want %s", got, id)
	}
}

func TestLoginStateKeySealedAtRest(t *testing.T) {
	// Attack: a NATS dump yields the login-state key, and with it the PKCE
	// verifier and nonce of every pending login (and forged login states).
	srv := natstest.Start(t)
	clk := newClock()
	r := open(t, srv.JS, clk, nil)
	if _, err := r.RotateLoginStateKey(natstest.Context(t)); err != nil {
		t.Fatal(err)
	}
	stored := r.current().stored.StateKeys
	if len(stored) != 2 {
		t.Fatalf("%d stored login-state keys, want 2", len(stored))
	}
	all := dump(t, srv.JS, "keys")
	for _, k := range stored {
		raw, err := testSeal.Open(k.Sealed, stateKeyAAD(k.ID))
		if err != nil || len(raw) != seal.KeySize {
			t.Fatalf("stored login-state key %s does not open with the encryption key: %v", k.ID, err)
		}
		for _, msg := range all {
			for _, form := range spellings(raw) {
				if bytes.Contains(msg, form) {
					t.Errorf("login-state key %s is readable in the NATS dump", k.ID)
				}
			}
		}
	}
}

// An older edgepass replica rewriting the ring drops the login-state keys
// it does not know: logins keep working, sealed with the encryption key
// every replica shares, until the ring has a login-state key again.
func TestLoginStateSurvivesARingWithoutStateKeys(t *testing.T) {
	srv := natstest.Start(t)
	ctx := natstest.Context(t)
	clk := newClock()
	r := open(t, srv.JS, clk, nil)
	if err := r.mutate(ctx, func(sr *storedRing, _ time.Time) (bool, error) {
		sr.StateKeys = nil
		return true, nil
	}); err != nil {
		t.Fatal(err)
	}
	s := r.LoginStateSealer()
	v := s.Seal([]byte("x"), "st")
	if got, err := s.Open(v, "st"); err != nil || string(got) != "x" {
		t.Fatalf("without login-state keys: %q, %v", got, err)
	}
	if err := r.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	if len(r.current().stateKeys) != 1 {
		t.Fatal("Tick did not give the ring a login-state key again")
	}
	if got, err := s.Open(v, "st"); err != nil || string(got) != "x" {
		t.Fatalf("a login sealed meanwhile: %q, %v", got, err)
	}
	other, _, _ := seal.Generate()
	if _, err := s.Open(other.Seal([]byte("x"), "edgepass login state\x00st"), "st"); err == nil {
		t.Fatalf("a value sealed by another installation opened: %v", err)
	}
}
