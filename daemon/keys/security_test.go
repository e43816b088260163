package keys

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/edgepass/edgepass/daemon/internal/natstest"
	"github.com/edgepass/edgepass/daemon/seal"
	"github.com/edgepass/edgepass/daemon/session"
	"github.com/edgepass/edgepass/plugin/edgestate"
	"github.com/edgepass/edgepass/plugin/token"
)

// dump returns every message a bucket's stream holds, as a NATS dump would.
func dump(t *testing.T, js jetstream.JetStream, bucket string) [][]byte {
	t.Helper()
	ctx := natstest.Context(t)
	s, err := js.Stream(ctx, "KV_"+bucket)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && seq > 0; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			continue // deleted
		}
		out = append(out, m.Data)
	}
	if len(out) == 0 {
		t.Fatalf("bucket %s is empty", bucket)
	}
	return out
}

// spellings are the forms a secret could take in a JSON dump.
func spellings(secret []byte) [][]byte {
	return [][]byte{secret,
		[]byte(base64.StdEncoding.EncodeToString(secret)),
		[]byte(base64.RawStdEncoding.EncodeToString(secret)),
		[]byte(base64.RawURLEncoding.EncodeToString(secret)),
		[]byte(hex.EncodeToString(secret))}
}

func TestSigningKeysUnreadableInNATSDump(t *testing.T) {
	// Attack: whoever reads a NATS dump (a backup, an over-privileged credential) takes the signing key or the trust anchor and mints tokens or facts for anyone, or takes refresh tokens.
	srv := natstest.Start(t)
	ctx := natstest.Context(t)
	clk := newClock()
	r := open(t, srv.JS, clk, nil)
	old := r.current().priv.Seed()
	if _, err := r.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	secrets := map[string][]byte{
		"retired signing key": old,
		"signing key":         r.current().priv.Seed(),
		"trust anchor":        r.current().anchor.Seed(),
	}
	st, err := session.OpenStore(ctx, srv.JS, session.StoreOptions{Bucket: "sessions", Lifetime: time.Hour, Seal: testSeal})
	if err != nil {
		t.Fatal(err)
	}
	s := sess(clk)
	s.ExpiresAt = time.Now().Add(time.Hour)
	s.RefreshToken = "refresh-token-of-alice-0123456789"
	s.IDToken = "id-token-of-alice-0123456789"
	if err := st.Put(ctx, s); err != nil {
		t.Fatal(err)
	}
	secrets["refresh token"] = []byte(s.RefreshToken)
	secrets["ID token"] = []byte(s.IDToken)

	var all [][]byte
	all = append(all, dump(t, srv.JS, "keys")...)
	all = append(all, dump(t, srv.JS, "sessions")...)
	for name, secret := range secrets {
		for _, msg := range all {
			for _, form := range spellings(secret) {
				if bytes.Contains(msg, form) {
					t.Errorf("the %s is readable in the NATS dump", name)
				}
			}
		}
	}
	// The daemon itself still reads everything back.
	if got, _, err := st.Get(ctx, s.ID); err != nil || got.RefreshToken != s.RefreshToken {
		t.Errorf("session read back: %v", err)
	}
	r2 := open(t, srv.JS, clk, nil)
	if r2.KeyID() != r.KeyID() || r2.Anchor() != r.Anchor() {
		t.Error("a replica with the same encryption key does not read the ring")
	}
}

func TestWrongEncryptionKeyIsRefusedClearly(t *testing.T) {
	// A replica given another keys.encryptionKeyFile must stop with what to do, not sign with a key of its own.
	srv := natstest.Start(t)
	clk := newClock()
	open(t, srv.JS, clk, nil)
	other, _, _ := seal.Generate()
	_, err := Open(natstest.Context(t), srv.JS, Options{Bucket: "keys", Lifetime: time.Hour, Seal: other, Now: clk.Now})
	want := "key ring sealed with encryption key " + testSeal.ID() + ", this daemon has " + other.ID() + "; give every daemon replica the same keys.encryptionKeyFile"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("Open with another encryption key = %v, want %q", err, want)
	}
	if _, err := Open(natstest.Context(t), srv.JS, Options{Bucket: "keys", Lifetime: time.Hour}); err == nil {
		t.Error("Open without an encryption key = nil error")
	}
}

func TestLegacyPlaintextSeedIsSealed(t *testing.T) {
	srv := natstest.Start(t)
	ctx := natstest.Context(t)
	clk := newClock()
	kv, err := srv.JS.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "keys"})
	if err != nil {
		t.Fatal(err)
	}
	pub, priv, _ := ed25519.GenerateKey(nil)
	kid := keyID(pub)
	legacy, _ := json.Marshal(map[string]any{"keys": []map[string]any{{"kid": kid, "seed": priv.Seed(), "created": 1, "activated": 1}}})
	if _, err := kv.Put(ctx, ringKey, legacy); err != nil {
		t.Fatal(err)
	}
	r := open(t, srv.JS, clk, nil)
	if r.KeyID() != kid {
		t.Fatalf("signing with %q, want the legacy key %q kept", r.KeyID(), kid)
	}
	e, _ := kv.Get(ctx, ringKey)
	for _, form := range spellings(priv.Seed()) {
		if bytes.Contains(e.Value(), form) {
			t.Fatal("legacy plaintext seed still in the ring after Open")
		}
	}
}

// edgeOf is an edge fed with every keys fact a recorder got, signed as edgepub would.
func edgeOf(t *testing.T, r *Ring, facts []edgestate.KeysFact) *edgestate.State {
	t.Helper()
	st := edgestate.NewWithAnchors(r.AnchorKeys())
	for i, f := range facts {
		f.Iat = int64(i + 1)
		v, err := edgestate.SignKeys(f, r.AnchorSigningKey())
		if err != nil {
			t.Fatal(err)
		}
		if err := st.Apply(edgestate.KeyKeys, "", v, uint64(i+1), time.Now()); err != nil {
			t.Fatalf("edge refused keys fact %d: %v", i, err)
		}
	}
	return st
}

func TestRevokedKeyNeverVerifiesAgain(t *testing.T) {
	// Attack: a leaked signing key keeps minting tokens for anyone; revoking it must make every edge refuse them, new ones included.
	srv := natstest.Start(t)
	ctx := natstest.Context(t)
	clk := newClock()
	pub := &recorder{}
	r := open(t, srv.JS, clk, pub)
	pub.ring = r
	leaked := r.KeyID()
	leakedPriv := r.current().priv
	honest, _ := r.Sign(sess(clk))
	pub.mu.Lock()
	pub.sets, pub.facts, pub.signing = nil, nil, nil
	pub.mu.Unlock()

	res, err := r.Revoke(ctx, leaked)
	if err != nil {
		t.Fatal(err)
	}
	if !res.WasActive || res.SigningKeyID == leaked || r.KeyID() != res.SigningKeyID || res.SigningKeyID == "" {
		t.Fatalf("Revoke = %+v, signing %q; want a new signing key", res, r.KeyID())
	}
	// The successor reached the edges before it signed anything.
	pub.mu.Lock()
	first := -1
	for i, ks := range pub.sets {
		if _, ok := ks.Lookup(res.SigningKeyID); ok {
			first = i
			break
		}
	}
	if first < 0 || pub.signing[first] != leaked {
		t.Errorf("new key first published at %d while signing with %v; want it published before it signs", first, pub.signing)
	}
	facts := append([]edgestate.KeysFact(nil), pub.facts...)
	pub.mu.Unlock()
	last := pub.lastFact()
	if has(pub.last(), leaked) || len(last.Revoked) != 1 || last.Revoked[0] != leaked {
		t.Fatalf("last keys fact: revoked %v, JWKS still has the key: %v", last.Revoked, has(pub.last(), leaked))
	}

	forgedSess := sess(clk)
	forgedSess.Subject = "admin"
	forged, _ := token.Sign(&token.Claims{Issuer: issuer, Audience: token.Audience{Audience}, Subject: "admin", SessionID: forgedSess.ID,
		IssuedAt: clk.Now().Unix(), Expiry: clk.Now().Add(time.Hour).Unix()}, leaked, leakedPriv)
	edge := edgeOf(t, r, facts)
	v := &token.Verifier{Issuer: issuer, Audience: Audience}
	for name, raw := range map[string]string{"token signed before the revocation": honest, "token forged after it": forged} {
		if _, err := r.SessionID(raw); !errors.Is(err, token.ErrUnknownKey) {
			t.Errorf("%s: daemon SessionID = %v, want ErrUnknownKey", name, err)
		}
		if _, err := v.Verify(raw, edge.Keys(), clk.Now()); !errors.Is(err, token.ErrUnknownKey) {
			t.Errorf("%s: edge verifies it (%v)", name, err)
		}
	}
	if !edge.KeyRevoked(leaked) {
		t.Error("edge does not hold the key id as revoked")
	}
	states := map[string]string{}
	for _, k := range r.Keys() {
		states[k.ID] = k.State
	}
	if states[leaked] != "revoked" || states[res.SigningKeyID] != "active" {
		t.Errorf("key states %v", states)
	}
	// Its private half is gone from the ring.
	for _, k := range r.current().stored.Keys {
		if k.ID == leaked && (k.Sealed != "" || len(k.Seed) > 0) {
			t.Error("revoked key's private half still stored")
		}
	}
	// A replica restarting on this ring never trusts it again.
	r2 := open(t, srv.JS, clk, nil)
	if _, ok := r2.PublicKeys().Lookup(leaked); ok {
		t.Error("a restarted replica trusts the revoked key")
	}
	// Revoking again is harmless, an unknown kid is refused.
	if _, err := r.Revoke(ctx, leaked); err != nil {
		t.Errorf("revoking twice: %v", err)
	}
	if _, err := r.Revoke(ctx, "no-such-kid"); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("Revoke(unknown) = %v, want ErrUnknownKey", err)
	}
	// The revoked id stays listed while any token it signed could be live, then goes.
	clk.Add(time.Hour + time.Minute + time.Second + horizonExtend)
	if err := r.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	if f := pub.lastFact(); len(f.Revoked) != 0 {
		t.Errorf("revoked list %v kept past the horizon", f.Revoked)
	}
}

func has(ks *token.KeySet, kid string) bool { _, found := ks.Lookup(kid); return found }

func TestRevokeRetiredKeyKeepsSigning(t *testing.T) {
	srv := natstest.Start(t)
	ctx := natstest.Context(t)
	clk := newClock()
	pub := &recorder{}
	r := open(t, srv.JS, clk, pub)
	old := r.KeyID()
	kid, err := r.Rotate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	res, err := r.Revoke(ctx, old)
	if err != nil {
		t.Fatal(err)
	}
	if res.WasActive || r.KeyID() != kid || res.SigningKeyID != kid {
		t.Errorf("Revoke(retired) = %+v, signing %q; want %q kept", res, r.KeyID(), kid)
	}
	if has(pub.last(), old) || !has(pub.last(), kid) {
		t.Error("published JWKS after revoking the retired key is wrong")
	}
}

func TestAnchorSharedByReplicas(t *testing.T) {
	srv := natstest.Start(t)
	clk := newClock()
	rings := make([]*Ring, 4)
	errs := make(chan error, len(rings))
	for i := range rings {
		go func() {
			r, err := Open(natstest.Context(t), srv.JS, Options{Bucket: "keys", Lifetime: time.Hour, Issuer: issuer, Seal: testSeal, Now: clk.Now})
			rings[i] = r
			errs <- err
		}()
	}
	for range rings {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	for _, r := range rings {
		if r.Anchor() == "" || r.Anchor() != rings[0].Anchor() {
			t.Fatalf("replicas starting together got anchors %q and %q", r.Anchor(), rings[0].Anchor())
		}
	}
	if _, err := token.ParseAnchors([]string{rings[0].Anchor()}); err != nil {
		t.Errorf("Anchor() is not what edges parse: %v", err)
	}
	if id := rings[0].AnchorKeys().Keys()[0].ID; id != rings[0].AnchorID() {
		t.Errorf("AnchorKeys id %q, AnchorID %q", id, rings[0].AnchorID())
	}
}

func TestHorizonOutlivesALifetimeCut(t *testing.T) {
	srv := natstest.Start(t)
	ctx := natstest.Context(t)
	clk := newClock()
	long := open(t, srv.JS, clk, nil, func(o *Options) { o.Lifetime = 12 * time.Hour })
	if long.Horizon() != 12*time.Hour {
		t.Fatalf("horizon %s, want 12h", long.Horizon())
	}
	long.Close()
	// Restart with a shorter lifetime: tokens of 12h can still be live.
	pub := &recorder{}
	short := open(t, srv.JS, clk, pub, func(o *Options) { o.Lifetime = time.Hour })
	if short.Horizon() != 12*time.Hour || pub.lastFact().MaxTokenLifetime != 12*3600 {
		t.Fatalf("after the cut: horizon %s, published max lifetime %d; want 12h", short.Horizon(), pub.lastFact().MaxTokenLifetime)
	}
	steps := []struct {
		after time.Duration
		want  time.Duration
	}{
		{6 * time.Hour, 12 * time.Hour},
		{6*time.Hour + horizonExtend + time.Second, time.Hour}, // past the 12h entry's end
	}
	for _, s := range steps {
		clk.Add(s.after)
		if err := short.Tick(ctx); err != nil {
			t.Fatal(err)
		}
		if short.Horizon() != s.want || pub.lastFact().MaxTokenLifetime != int64(s.want/time.Second) {
			t.Errorf("after +%s: horizon %s, published %ds; want %s", s.after, short.Horizon(), pub.lastFact().MaxTokenLifetime, s.want)
		}
	}
	// The entry is extended only when it must be: not on every tick.
	rev := short.current().rev
	clk.Add(time.Minute)
	if err := short.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	if short.current().rev != rev {
		t.Error("a tick rewrote the ring although the horizon entry was far enough ahead")
	}
}
