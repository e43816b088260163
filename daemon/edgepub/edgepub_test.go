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

	"github.com/edgepass/edgepass/daemon/internal/horizontest"
	"github.com/edgepass/edgepass/daemon/internal/natstest"
	"github.com/edgepass/edgepass/daemon/internal/poll"
	"github.com/edgepass/edgepass/daemon/kvbucket"
	"github.com/edgepass/edgepass/plugin/edgestate"
	"github.com/edgepass/edgepass/plugin/token"
)

var (
	t0  = time.Unix(1_700_000_000, 0)
	sid = strings.Repeat("S", 43)
)

// testAnchor is the trust anchor of every publisher in these tests.
var testAnchor = func() ed25519.PrivateKey {
	_, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		panic(err)
	}
	return priv
}()

func anchors() *token.KeySet {
	pub := testAnchor.Public().(ed25519.PublicKey)
	return token.NewKeySet(token.Key{ID: token.AnchorID(pub), Public: pub})
}

func jwks(t *testing.T) []byte {
	t.Helper()
	pub, _, _ := ed25519.GenerateKey(nil)
	b, err := token.NewKeySet(token.Key{ID: "k1", Public: pub}).MarshalJWKS()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func keysFact(t *testing.T) edgestate.KeysFact {
	return edgestate.KeysFact{JWKS: jwks(t), MaxTokenLifetime: int64(12 * time.Hour / time.Second)}
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

// clock is a settable clock.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	c.now = t
	c.mu.Unlock()
}

func openPub(t *testing.T, js jetstream.JetStream, obs *observed, mod ...func(*Options)) *Publisher {
	t.Helper()
	o := Options{Bucket: "edge", Lifetime: 12 * time.Hour, Anchor: testAnchor, Now: func() time.Time { return t0 }}
	if obs != nil {
		o.Observe = obs.observe
	}
	for _, m := range mod {
		m(&o)
	}
	p, err := OpenPublisher(natstest.Context(t), js, o)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// signedPayload verifies a signed fact with the test anchor and returns its payload.
func signedPayload(t *testing.T, value []byte) map[string]any {
	t.Helper()
	payload, err := token.VerifyFact(value, anchors())
	if err != nil {
		t.Fatalf("fact %q does not verify with the anchor: %v", value, err)
	}
	var m map[string]any
	if err := json.Unmarshal(payload, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestPublisherWritesContractFacts(t *testing.T) {
	srv := natstest.Start(t)
	ctx := natstest.Context(t)
	obs := &observed{}
	p := openPub(t, srv.JS, obs)
	kf := keysFact(t)

	if err := p.RevokeSession(ctx, sid, t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := p.RevokeUser(ctx, "user|42", t0.Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := p.SetGroups(ctx, "user|42", []string{"admins", "staff"}); err != nil {
		t.Fatal(err)
	}
	if err := p.PublishKeys(ctx, kf); err != nil {
		t.Fatal(err)
	}

	kv, _ := srv.JS.KeyValue(ctx, "edge")
	sk := token.SubjectKey("user|42")
	plain := []struct {
		key, want string
	}{
		{"revoke.session." + sid, fmt.Sprintf(`{"exp":%d}`, t0.Add(time.Hour).Unix())},
		{"revoke.user." + sk, fmt.Sprintf(`{"before":%d,"exp":%d}`, t0.Unix()-1, t0.Add(12*time.Hour).Unix()-1)},
	}
	for _, tc := range plain {
		e, err := kv.Get(ctx, tc.key)
		if err != nil {
			t.Errorf("Get(%s): %v", tc.key, err)
			continue
		}
		if string(e.Value()) != tc.want {
			t.Errorf("%s = %s, want %s", tc.key, e.Value(), tc.want)
		}
	}
	signed := []struct {
		key, want string
	}{
		{"groups." + sk, fmt.Sprintf(`{"key":"groups.%s","iat":%d,"groups":["admins","staff"],"at":%d,"exp":%d}`, sk, t0.UnixMilli(), t0.Unix(), t0.Add(12*time.Hour).Unix())},
		{"keys", fmt.Sprintf(`{"key":"keys","iat":%d,"jwks":%s,"maxTokenLifetime":43200}`, t0.UnixMilli(), kf.JWKS)},
	}
	for _, tc := range signed {
		e, err := kv.Get(ctx, tc.key)
		if err != nil {
			t.Errorf("Get(%s): %v", tc.key, err)
			continue
		}
		got, _ := json.Marshal(signedPayload(t, e.Value()))
		var want map[string]any
		_ = json.Unmarshal([]byte(tc.want), &want)
		wantJSON, _ := json.Marshal(want)
		if string(got) != string(wantJSON) {
			t.Errorf("%s payload = %s, want %s", tc.key, got, wantJSON)
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
	e, err := kv.Get(ctx, "groups."+sk)
	if err != nil {
		t.Fatalf("ClearGroups removed the entry (%v): edges refuse deletes, a clear is a signed put", err)
	}
	if f := signedPayload(t, e.Value()); f["clear"] != true {
		t.Errorf("cleared groups fact = %v, want clear:true", f)
	}
	if err := p.SetGroups(ctx, "nogroups", nil); err != nil {
		t.Fatal(err)
	}
	e, _ = kv.Get(ctx, "groups."+token.SubjectKey("nogroups"))
	if f := signedPayload(t, e.Value()); fmt.Sprint(f["groups"]) != "[]" {
		t.Errorf("empty groups written as %v, want []", f["groups"])
	}
}

// A session revoked without a known expiry stays revoked as long as any token can live.
func TestRevokeSessionWithoutExpiryLastsTheHorizon(t *testing.T) {
	srv := natstest.Start(t)
	ctx := natstest.Context(t)
	p := openPub(t, srv.JS, nil, func(o *Options) { o.Lifetime = 0; o.Horizon = kvbucket.FixedHorizon(24 * time.Hour) })
	if err := p.RevokeSession(ctx, sid, time.Time{}); err != nil {
		t.Fatal(err)
	}
	kv, _ := srv.JS.KeyValue(ctx, "edge")
	e, err := kv.Get(ctx, "revoke.session."+sid)
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf(`{"exp":%d}`, t0.Add(24*time.Hour).Unix()); string(e.Value()) != want {
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
		{"empty subject clear", p.ClearGroups(ctx, "")},
		{"too many groups", p.SetGroups(ctx, "u", many)},
		{"invalid JWKS", p.PublishKeys(ctx, edgestate.KeysFact{JWKS: []byte(`{"keys":[]}`), MaxTokenLifetime: 60})},
		{"not JSON", p.PublishKeys(ctx, edgestate.KeysFact{JWKS: []byte(`garbage`), MaxTokenLifetime: 60})},
		{"no lifetime bound", p.PublishKeys(ctx, edgestate.KeysFact{JWKS: jwks(t)})},
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
	if _, err := OpenPublisher(ctx, srv.JS, Options{Bucket: "edge2", Lifetime: time.Hour}); err == nil {
		t.Error("OpenPublisher without a trust anchor = nil error")
	}
}

func watch(t *testing.T, js jetstream.JetStream, ks *token.KeySet) *Follower {
	t.Helper()
	w, err := Follow(natstest.Context(t), js, "edge", ks, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Close)
	select {
	case <-w.Synced():
	case <-time.After(5 * time.Second):
		t.Fatal("watcher never synced")
	}
	return w
}

func TestFollowerFeedsState(t *testing.T) {
	srv := natstest.Start(t)
	ctx := natstest.Context(t)
	now := time.Now()
	p := openPub(t, srv.JS, nil, func(o *Options) { o.Lifetime = time.Hour; o.Now = nil })
	// A fact published before the watcher starts is replayed.
	if err := p.RevokeSession(ctx, sid, now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	w := watch(t, srv.JS, anchors())
	st := w.State()
	if !st.Synced() || !st.Revoked(sid, "", now.Unix(), now) {
		t.Fatal("replayed session revocation not applied")
	}

	// Live facts.
	before := now.Add(-time.Minute)
	_ = p.RevokeUser(ctx, "bob", before)
	_ = p.SetGroups(ctx, "carol", []string{"ops"})
	_ = p.PublishKeys(ctx, keysFact(t))
	poll.Until(t, 5*time.Second, "live facts", func() bool { return st.Keys() != nil && st.Stats().Groups == 1 && st.Stats().Users == 1 })
	bob := token.SubjectKey("bob")
	if !st.Revoked("", bob, before.Unix(), now) || st.Revoked("", bob, now.Unix(), now) {
		t.Error("user revocation must refuse tokens issued at or before `before` only")
	}
	if g, ok := st.GroupsOverride(token.SubjectKey("carol"), now.Unix()-10); !ok || g[0] != "ops" {
		t.Errorf("GroupsOverride = %v %v", g, ok)
	}
	if st.MaxTokenLifetime() != 12*3600 {
		t.Errorf("MaxTokenLifetime = %d, want the published 43200", st.MaxTokenLifetime())
	}

	// Attack: a forged or corrupt value in the bucket is ignored and counted, not fatal.
	kv, _ := srv.JS.KeyValue(ctx, "edge")
	rejected := st.Stats().Rejected
	_, _ = kv.Put(ctx, "revoke.user."+token.SubjectKey("eve"), []byte(`{"before":"yesterday"}`))
	_, _ = kv.Put(ctx, "something.else", []byte(`{}`))
	poll.Until(t, 5*time.Second, "rejections", func() bool { return st.Stats().Rejected == rejected+2 })

	if err := p.ClearGroups(ctx, "carol"); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, 5*time.Second, "clear applied", func() bool { _, ok := st.GroupsOverride(token.SubjectKey("carol"), 1); return !ok })
	if st.LastSeq() == 0 {
		t.Error("LastSeq not tracked")
	}
}

func TestDeletedRevocationStaysInForce(t *testing.T) {
	// Attack: a NATS writer deletes or purges a revocation to bring a stolen token back.
	srv := natstest.Start(t)
	ctx := natstest.Context(t)
	now := time.Now()
	p := openPub(t, srv.JS, nil, func(o *Options) { o.Now = nil })
	if err := p.RevokeSession(ctx, sid, now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	st := watch(t, srv.JS, anchors()).State()
	kv, _ := srv.JS.KeyValue(ctx, "edge")
	rejected := st.Stats().Rejected
	if err := kv.Delete(ctx, "revoke.session."+sid); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, 5*time.Second, "delete refused", func() bool { return st.Stats().Rejected == rejected+1 })
	if err := kv.Purge(ctx, "revoke.session."+sid); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, 5*time.Second, "purge refused", func() bool { return st.Stats().Rejected == rejected+2 })
	if !st.Revoked(sid, "", now.Unix(), now) {
		t.Fatal("a deleted revocation was lifted")
	}
}

func TestForgedAdminGroupsNotTakenAtLogin(t *testing.T) {
	// Attack: a NATS writer plants an unsigned (or otherwise-signed) admin override so the next login carries its groups.
	srv := natstest.Start(t)
	ctx := natstest.Context(t)
	p := openPub(t, srv.JS, nil)
	kv, _ := srv.JS.KeyValue(ctx, "edge")
	sk := token.SubjectKey("mallory")
	_, forger, _ := ed25519.GenerateKey(nil)
	forged, _ := edgestate.SignGroups(sk, edgestate.GroupsFact{Iat: t0.UnixMilli(), Groups: []string{"admins"}, At: t0.Unix(), Exp: t0.Add(time.Hour).Unix(), Admin: true}, forger)
	otherKey, _ := edgestate.SignGroups(token.SubjectKey("alice"), edgestate.GroupsFact{Iat: t0.UnixMilli(), Groups: []string{"admins"}, At: t0.Unix(), Exp: t0.Add(time.Hour).Unix(), Admin: true}, testAnchor)
	for name, v := range map[string][]byte{
		"unsigned":              []byte(fmt.Sprintf(`{"groups":["admins"],"at":%d,"exp":%d,"admin":true}`, t0.Unix(), t0.Add(time.Hour).Unix())),
		"signed by another key": forged,
		"signed for alice":      otherKey,
	} {
		if _, err := kv.Put(ctx, "groups."+sk, v); err != nil {
			t.Fatal(err)
		}
		if g, ok, err := p.GroupsOverride(ctx, "mallory"); ok || err != nil {
			t.Errorf("%s: GroupsOverride = %v, %v, %v; want no override", name, g, ok, err)
		}
	}
}

func TestSignedFactsNeverGoBackInTime(t *testing.T) {
	// A replica whose clock runs behind must not write a fact edges would refuse as a replay (or that a fresh edge would take as the latest).
	srv := natstest.Start(t)
	ctx := natstest.Context(t)
	ahead := &clock{now: t0.Add(time.Minute)}
	behind := &clock{now: t0}
	a := openPub(t, srv.JS, nil, func(o *Options) { o.Now = ahead.Now })
	b := openPub(t, srv.JS, nil, func(o *Options) { o.Now = behind.Now })
	st := edgestate.NewWithAnchors(anchors())
	kv, _ := srv.JS.KeyValue(ctx, "edge")
	apply := func(key string) int64 {
		e, err := kv.Get(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		if err := st.Apply(key, "", e.Value(), e.Revision(), t0); err != nil {
			t.Fatalf("edge refused %s: %v", key, err)
		}
		return int64(signedPayload(t, e.Value())["iat"].(float64))
	}
	steps := []struct {
		name string
		do   func() error
		key  string
	}{
		{"admin override from the fast replica", func() error { return a.SetAdminGroups(ctx, "carol", []string{"ops"}) }, "groups." + token.SubjectKey("carol")},
		{"clear from the slow replica", func() error { return b.ClearGroups(ctx, "carol") }, "groups." + token.SubjectKey("carol")},
		{"keys from the fast replica", func() error { return a.PublishKeys(ctx, keysFact(t)) }, "keys"},
		{"keys from the slow replica", func() error { return b.PublishKeys(ctx, keysFact(t)) }, "keys"},
	}
	last := map[string]int64{}
	for _, s := range steps {
		if err := s.do(); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		iat := apply(s.key)
		if iat <= last[s.key] {
			t.Errorf("%s: iat %d not after the held %d", s.name, iat, last[s.key])
		}
		last[s.key] = iat
	}
	if _, ok := st.GroupsOverride(token.SubjectKey("carol"), t0.Unix()); ok {
		t.Error("the slow replica's clear did not take effect")
	}
}

func TestRevocationsOnlyGrowInTheBucket(t *testing.T) {
	// A fresh edge replays the bucket: a later, shorter revocation written there must not shorten what it learns.
	srv := natstest.Start(t)
	ctx := natstest.Context(t)
	p := openPub(t, srv.JS, nil)
	kv, _ := srv.JS.KeyValue(ctx, "edge")
	steps := []struct {
		name string
		do   func() error
		key  string
		want string
	}{
		{"session revoked until +2h", func() error { return p.RevokeSession(ctx, sid, t0.Add(2*time.Hour)) }, "revoke.session." + sid, fmt.Sprintf(`{"exp":%d}`, t0.Add(2*time.Hour).Unix())},
		{"then until +1h", func() error { return p.RevokeSession(ctx, sid, t0.Add(time.Hour)) }, "revoke.session." + sid, fmt.Sprintf(`{"exp":%d}`, t0.Add(2*time.Hour).Unix())},
		{"user revoked at t0", func() error { return p.RevokeUser(ctx, "bob", t0) }, "revoke.user." + token.SubjectKey("bob"), fmt.Sprintf(`{"before":%d,"exp":%d}`, t0.Unix(), t0.Add(12*time.Hour).Unix())},
		{"then at t0-1h", func() error { return p.RevokeUser(ctx, "bob", t0.Add(-time.Hour)) }, "revoke.user." + token.SubjectKey("bob"), fmt.Sprintf(`{"before":%d,"exp":%d}`, t0.Unix(), t0.Add(12*time.Hour).Unix())},
	}
	for _, s := range steps {
		if err := s.do(); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		e, err := kv.Get(ctx, s.key)
		if err != nil {
			t.Fatal(err)
		}
		if string(e.Value()) != s.want {
			t.Errorf("%s: %s = %s, want %s", s.name, s.key, e.Value(), s.want)
		}
	}
}

func TestEdgeBucketFollowsHorizon(t *testing.T) {
	srv := natstest.Start(t)
	ctx := natstest.Context(t)
	h := horizontest.New(12 * time.Hour)
	p := openPub(t, srv.JS, nil, func(o *Options) { o.Horizon = h })
	horizontest.Run(t, srv.JS, "edge", h, []horizontest.Step{
		{Name: "opened", Horizon: 12 * time.Hour, Do: func() error { return nil }, Want: 12*time.Hour + TTLMargin},
		{Name: "raised before a fact that needs it", Horizon: 24 * time.Hour, Do: func() error { return p.RevokeUser(ctx, "a", t0) }, Want: 24*time.Hour + TTLMargin},
		{Name: "never lowered by a write", Horizon: time.Hour, Do: func() error { return p.RevokeUser(ctx, "b", t0) }, Want: 24*time.Hour + TTLMargin},
		{Name: "lowered on the maintenance tick", Horizon: time.Hour, Do: func() error { return p.FitTTL(ctx) }, Want: time.Hour + TTLMargin},
	})
	if maxEdgeClockSkew := 5 * time.Minute; TTLMargin <= edgestate.PruneGrace || TTLMargin <= maxEdgeClockSkew {
		t.Errorf("TTLMargin %s does not cover the edges' PruneGrace and clock skew", TTLMargin)
	}
}

func TestWatchMissingBucket(t *testing.T) {
	srv := natstest.Start(t)
	if _, err := Follow(context.Background(), srv.JS, "nope", anchors(), nil); err == nil || !strings.Contains(err.Error(), "nope") {
		t.Errorf("Follow(missing bucket) = %v, want an error naming it", err)
	}
}
