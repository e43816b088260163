package keys

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/edgepass/edgepass/daemon/internal/natstest"
	"github.com/edgepass/edgepass/daemon/minter"
	"github.com/edgepass/edgepass/daemon/seal"
	"github.com/edgepass/edgepass/daemon/session"
	"github.com/edgepass/edgepass/plugin/edgestate"
	"github.com/edgepass/edgepass/plugin/token"
)

const issuer = "https://auth.example.com"

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: time.Unix(1_700_000_000, 0)} }
func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}
func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	c.now = t
	c.mu.Unlock()
}
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

var testSeal = func() *seal.Key {
	k, _, err := seal.Generate()
	if err != nil {
		panic(err)
	}
	return k
}()

// recorder is a KeysPublisher remembering what it was sent, and optionally
// what the ring was signing with at that moment.
type recorder struct {
	mu      sync.Mutex
	sets    []*token.KeySet
	facts   []edgestate.KeysFact
	signing []string
	ring    *Ring
}

func (p *recorder) PublishKeys(_ context.Context, f edgestate.KeysFact) error {
	ks, err := token.ParseJWKS(f.JWKS)
	if err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.sets = append(p.sets, ks)
	p.facts = append(p.facts, f)
	if p.ring != nil {
		p.signing = append(p.signing, p.ring.KeyID())
	}
	return nil
}

func (p *recorder) last() *token.KeySet {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.sets) == 0 {
		return nil
	}
	return p.sets[len(p.sets)-1]
}

func (p *recorder) lastFact() edgestate.KeysFact {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.facts) == 0 {
		return edgestate.KeysFact{}
	}
	return p.facts[len(p.facts)-1]
}

func open(t *testing.T, js jetstream.JetStream, clk *clock, pub KeysPublisher, mod ...func(*Options)) *Ring {
	t.Helper()
	o := Options{Bucket: "keys", Lifetime: time.Hour, ClockSkew: time.Minute, Issuer: issuer, Seal: testSeal, Now: clk.Now}
	for _, m := range mod {
		m(&o)
	}
	r, err := Open(natstest.Context(t), js, o)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if pub == nil {
		pub = nopPublisher{}
	}
	if err := r.Start(natstest.Context(t), pub); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(r.Close)
	return r
}

type nopPublisher struct{}

func (nopPublisher) PublishKeys(context.Context, edgestate.KeysFact) error { return nil }

func sess(clk *clock) *session.Session {
	now := clk.Now()
	return &session.Session{ID: strings.Repeat("s", 43), Subject: "alice", Username: "alice", Email: "alice@example.com",
		Name: "Alice", Groups: []string{"staff"}, IssuedAt: now, ExpiresAt: now.Add(time.Hour)}
}

func TestOpenGeneratesAndSigns(t *testing.T) {
	srv := natstest.Start(t)
	clk := newClock()
	pub := &recorder{}
	r := open(t, srv.JS, clk, pub)

	if r.KeyID() == "" || r.PublicKeys().Len() != 1 {
		t.Fatalf("fresh ring: kid %q, %d public keys; want one key", r.KeyID(), r.PublicKeys().Len())
	}
	if pub.last() == nil || pub.last().Len() != 1 {
		t.Fatalf("JWKS not published at start")
	}
	if _, ok := pub.last().Lookup(r.KeyID()); !ok {
		t.Fatal("published JWKS lacks the signing key")
	}
	raw, err := r.Sign(sess(clk))
	if err != nil {
		t.Fatal(err)
	}
	c, err := (&token.Verifier{Issuer: issuer, Audience: "edgepass"}).Verify(raw, pub.last(), clk.Now())
	if err != nil {
		t.Fatalf("edge cannot verify the token with the published keys: %v", err)
	}
	if c.Subject != "alice" || c.SessionID != strings.Repeat("s", 43) || c.Email != "alice@example.com" ||
		c.Name != "Alice" || c.PreferredUsername != "alice" || c.Groups[0] != "staff" || c.Expiry != clk.Now().Add(time.Hour).Unix() {
		t.Errorf("claims = %+v", c)
	}

	// A second replica (or a restart) uses the same ring.
	r2 := open(t, srv.JS, clk, nil)
	if r2.KeyID() != r.KeyID() {
		t.Errorf("second replica kid %q, want %q", r2.KeyID(), r.KeyID())
	}
}

func TestRotatePublishesBeforeSigning(t *testing.T) {
	// Attack on availability: a token signed with a key the edge has not
	// received yet would be refused. Rotation must publish first.
	srv := natstest.Start(t)
	clk := newClock()
	pub := &recorder{}
	r := open(t, srv.JS, clk, pub)
	pub.ring = r
	old := r.KeyID()
	oldTok, _ := r.Sign(sess(clk))
	pub.mu.Lock()
	pub.sets, pub.signing = nil, nil
	pub.mu.Unlock()

	clk.Add(time.Minute)
	kid, err := r.Rotate(natstest.Context(t))
	if err != nil {
		t.Fatal(err)
	}
	if kid == old || r.KeyID() != kid {
		t.Fatalf("Rotate = %q (signing %q), old %q", kid, r.KeyID(), old)
	}
	pub.mu.Lock()
	first := -1
	for i, ks := range pub.sets {
		if _, ok := ks.Lookup(kid); ok {
			first = i
			break
		}
	}
	if first < 0 || pub.signing[first] != old {
		t.Fatalf("new key first published at %d while signing with %v; want published while still signing with %q", first, pub.signing, old)
	}
	pub.mu.Unlock()

	// Old tokens keep verifying at the edge; new tokens name the new key.
	v := &token.Verifier{Issuer: issuer, Audience: "edgepass"}
	if _, err := v.Verify(oldTok, pub.last(), clk.Now()); err != nil {
		t.Errorf("token of the retired key refused after rotation: %v", err)
	}
	newTok, _ := r.Sign(sess(clk))
	if _, err := v.Verify(newTok, pub.last(), clk.Now()); err != nil {
		t.Errorf("token of the new key: %v", err)
	}
	states := map[string]string{}
	for _, k := range r.Keys() {
		states[k.ID] = k.State
	}
	if states[old] != "retired" || states[kid] != "active" {
		t.Errorf("key states = %v", states)
	}

	// Once every token of the old key has expired (lifetime + skew), it goes.
	clk.Add(time.Hour + time.Minute + time.Second)
	if err := r.Tick(natstest.Context(t)); err != nil {
		t.Fatal(err)
	}
	if _, ok := pub.last().Lookup(old); ok {
		t.Error("retired key still published after its tokens expired")
	}
	if _, ok := pub.last().Lookup(kid); !ok {
		t.Error("active key missing after prune")
	}
}

func TestScheduledRotationReplicasDoNotFight(t *testing.T) {
	srv := natstest.Start(t)
	clk := newClock()
	every := func(o *Options) { o.RotationInterval = 24 * time.Hour }
	a := open(t, srv.JS, clk, &recorder{}, every)
	b := open(t, srv.JS, clk, &recorder{}, every)
	first := a.KeyID()

	if err := a.Tick(natstest.Context(t)); err != nil {
		t.Fatal(err)
	}
	if a.KeyID() != first {
		t.Fatal("rotated before the interval elapsed")
	}

	clk.Add(24*time.Hour + time.Second)
	var wg sync.WaitGroup
	for _, r := range []*Ring{a, b, a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := r.Tick(natstest.Context(t)); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if a.KeyID() == first {
		t.Fatal("no rotation after the interval")
	}
	if got := len(a.Keys()); got != 2 {
		t.Errorf("ring holds %d keys after concurrent scheduled rotation, want 2 (one rotation)", got)
	}
	deadline := time.Now().Add(5 * time.Second)
	for b.KeyID() != a.KeyID() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if b.KeyID() != a.KeyID() {
		t.Errorf("replica b signs with %q, a with %q", b.KeyID(), a.KeyID())
	}
}

// interleaved is a publisher that, once armed, runs during before passing
// the first JWKS on: it puts another replica's writes between a ring's read
// of its keys and its write to the edge.
type interleaved struct {
	*recorder
	mu     sync.Mutex
	during func()
}

func (p *interleaved) PublishKeys(ctx context.Context, kf edgestate.KeysFact) error {
	p.mu.Lock()
	f := p.during
	p.during = nil
	p.mu.Unlock()
	if f != nil {
		f()
	}
	return p.recorder.PublishKeys(ctx, kf)
}

// A replica publishing a JWKS read just before another replica rotated must
// not leave that older key set at the edge: tokens signed with the new key
// would be refused everywhere.
func TestSlowReplicaDoesNotPublishStaleKeys(t *testing.T) {
	srv := natstest.Start(t)
	clk := newClock()
	edge := &recorder{}
	a := open(t, srv.JS, clk, edge)
	slow := &interleaved{recorder: edge}
	b := open(t, srv.JS, clk, slow)

	var kid string
	slow.during = func() {
		var err error
		if kid, err = a.Rotate(natstest.Context(t)); err != nil {
			t.Error(err)
		}
	}
	if err := b.publish(natstest.Context(t)); err != nil {
		t.Fatal(err)
	}
	if _, ok := edge.last().Lookup(kid); !ok || kid == "" {
		t.Fatalf("the edge's last JWKS lacks the new signing key %q", kid)
	}
}

func TestReplicaFollowsRotation(t *testing.T) {
	srv := natstest.Start(t)
	clk := newClock()
	a := open(t, srv.JS, clk, nil)
	b := open(t, srv.JS, clk, nil)
	kid, err := a.Rotate(natstest.Context(t))
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for b.KeyID() != kid && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if b.KeyID() != kid {
		t.Fatalf("replica b still signs with %q after a rotated to %q", b.KeyID(), kid)
	}
	if b.PublicKeys().Len() != 2 {
		t.Errorf("replica b knows %d public keys, want 2", b.PublicKeys().Len())
	}
}

func TestRingSurvivesRestart(t *testing.T) {
	srv := natstest.Start(t)
	clk := newClock()
	r := open(t, srv.JS, clk, nil)
	old := r.KeyID()
	tok, _ := r.Sign(sess(clk))
	kid, _ := r.Rotate(natstest.Context(t))
	r.Close()

	srv = srv.Restart()
	r2 := open(t, srv.JS, clk, nil)
	if r2.KeyID() != kid {
		t.Errorf("after restart signing with %q, want %q", r2.KeyID(), kid)
	}
	if _, ok := r2.PublicKeys().Lookup(old); !ok {
		t.Error("retired key lost across restart")
	}
	if sid, err := r2.SessionID(tok); err != nil || sid != strings.Repeat("s", 43) {
		t.Errorf("SessionID(old token) after restart = %q, %v", sid, err)
	}
}

func TestOpenFinishesInterruptedRotation(t *testing.T) {
	srv := natstest.Start(t)
	clk := newClock()
	r := open(t, srv.JS, clk, nil)
	old := r.KeyID()
	r.Close()
	// Simulate a crash after the pending key was stored, before activation.
	kv, _ := srv.JS.KeyValue(natstest.Context(t), "keys")
	e, _ := kv.Get(natstest.Context(t), ringKey)
	var sr storedRing
	_ = json.Unmarshal(e.Value(), &sr)
	k, _ := r.newKey(clk.Now())
	sr.Keys = append(sr.Keys, k)
	data, _ := json.Marshal(sr)
	if _, err := kv.Update(natstest.Context(t), ringKey, data, e.Revision()); err != nil {
		t.Fatal(err)
	}

	pub := &recorder{}
	r2 := open(t, srv.JS, clk, pub)
	if r2.KeyID() != k.ID {
		t.Errorf("signing with %q, want the pending key %q activated", r2.KeyID(), k.ID)
	}
	if _, ok := pub.last().Lookup(old); !ok {
		t.Error("previous key dropped from the JWKS")
	}
}

func TestSessionID(t *testing.T) {
	srv := natstest.Start(t)
	clk := newClock()
	r := open(t, srv.JS, clk, nil)
	other := open(t, natstest.Start(t).JS, clk, nil) // another install's keys
	foreignIssuer := open(t, natstest.Start(t).JS, clk, nil, func(o *Options) { o.Issuer = "https://evil.example.net" })

	good, _ := r.Sign(sess(clk))
	forged, _ := other.Sign(sess(clk))
	wrongIss, _ := foreignIssuer.Sign(sess(clk))
	expiredSess := sess(clk)
	expiredSess.IssuedAt = clk.Now().Add(-3 * time.Hour)
	expiredSess.ExpiresAt = clk.Now().Add(-2 * time.Hour)
	expired, _ := r.Sign(expiredSess)
	parts := strings.Split(good, ".")
	tampered := parts[0] + "." + parts[1] + "x." + parts[2]

	tests := []struct {
		name    string
		raw     string
		wantErr error
	}{
		{"valid", good, nil},
		{"expired token still names its session", expired, nil},
		{"signed by another key", forged, token.ErrUnknownKey},
		{"issued for another issuer", wrongIss, token.ErrUnknownKey},
		{"tampered payload", tampered, token.ErrSignature},
		{"garbage", "not-a-token", token.ErrMalformed},
		{"oversized", strings.Repeat("a", token.MaxTokenSize+1), token.ErrTooLarge},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sid, err := r.SessionID(tc.raw)
			if tc.wantErr == nil {
				if err != nil || sid != strings.Repeat("s", 43) {
					t.Fatalf("SessionID = %q, %v", sid, err)
				}
				return
			}
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("SessionID err = %v, want %v", err, tc.wantErr)
			}
		})
	}
}

func TestSessionIDRefusesWrongIssuerWithSharedKeys(t *testing.T) {
	// Attack: a token minted by the same keys for another issuer (a second
	// deployment sharing the key bucket) must not be accepted here.
	srv := natstest.Start(t)
	clk := newClock()
	r := open(t, srv.JS, clk, nil)
	twin := open(t, srv.JS, clk, nil, func(o *Options) { o.Issuer = "https://other.example.com" })
	raw, _ := twin.Sign(sess(clk))
	if _, err := r.SessionID(raw); !errors.Is(err, token.ErrIssuer) {
		t.Errorf("SessionID = %v, want ErrIssuer", err)
	}
}

func TestJWKSHandler(t *testing.T) {
	srv := natstest.Start(t)
	clk := newClock()
	r := open(t, srv.JS, clk, nil)
	// The handler the daemon serves: the ring's keys and the assertion
	// keys beside them in the key bucket.
	kv, err := srv.JS.KeyValue(natstest.Context(t), "keys")
	if err != nil {
		t.Fatal(err)
	}
	mintKeys, err := minter.OpenKeys(natstest.Context(t), kv, testSeal, clk.Now)
	if err != nil {
		t.Fatal(err)
	}
	jwks := minter.JWKSHandler(r.JWKS, mintKeys)
	tests := []struct {
		method string
		status int
	}{{http.MethodGet, 200}, {http.MethodHead, 200}, {http.MethodPost, 405}}
	for _, tc := range tests {
		rec := httptest.NewRecorder()
		jwks.ServeHTTP(rec, httptest.NewRequest(tc.method, "/.well-known/jwks.json", nil))
		if rec.Code != tc.status {
			t.Errorf("%s: status %d, want %d", tc.method, rec.Code, tc.status)
		}
		if tc.method == http.MethodGet {
			ks, err := token.ParseJWKS(rec.Body.Bytes())
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := ks.Lookup(r.KeyID()); !ok {
				t.Error("JWKS lacks the signing key")
			}
			if !strings.Contains(rec.Body.String(), `"kty":"OKP"`) || strings.Contains(rec.Body.String(), "seed") {
				t.Errorf("JWKS body = %s", rec.Body.String())
			}
		}
	}
}

func TestOpenRejectsDamagedRing(t *testing.T) {
	srv := natstest.Start(t)
	ctx := natstest.Context(t)
	kv, err := srv.JS.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "keys"})
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{`not json`, `{"keys":[{"kid":"x","seed":"AAAA","created":1,"activated":1}]}`} {
		if _, err := kv.Put(ctx, ringKey, []byte(bad)); err != nil {
			t.Fatal(err)
		}
		if _, err := Open(ctx, srv.JS, Options{Bucket: "keys", Lifetime: time.Hour, Seal: testSeal}); err == nil {
			t.Errorf("Open with ring %q = nil error, want a refusal", bad)
		}
	}
}
