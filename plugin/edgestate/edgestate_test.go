package edgestate

import (
	"crypto/ed25519"
	"errors"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgepass/edgepass/plugin/token"
)

var now = time.Unix(1_700_000_000, 0)

// Version reads the version counter, for the tests (the request path Loads
// VersionCounter itself).
func (s *State) Version() uint64 {
	return uint64(s.version.Load())
}

func mustApply(t *testing.T, s *State, key, op, value string) {
	t.Helper()
	if err := s.Apply(key, op, []byte(value), 0, now); err != nil {
		t.Fatalf("Apply(%q, %q, %s): %v", key, op, value, err)
	}
}

func jwks(t *testing.T, kid string) string {
	t.Helper()
	seed := make([]byte, ed25519.SeedSize)
	priv := ed25519.NewKeyFromSeed(seed)
	b, err := token.NewKeySet(token.Key{ID: kid, Public: priv.Public().(ed25519.PublicKey)}).MarshalJWKS()
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// anchor is the daemon's trust anchor in these tests; rogue is a key nobody
// configured.
var (
	anchor = ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize))
	rogue  = ed25519.NewKeyFromSeed([]byte("rogue-rogue-rogue-rogue-rogue-32"))
)

func anchored() *State {
	return NewWithAnchors(token.NewKeySet(token.Key{ID: token.AnchorID(anchor.Public().(ed25519.PublicKey)), Public: anchor.Public().(ed25519.PublicKey)}))
}

// keysFact is the signed keys value for a JWKS holding kid, signed at iat ms.
func keysFact(t *testing.T, signer ed25519.PrivateKey, kid string, iat int64, revoked ...string) string {
	t.Helper()
	v, err := SignKeys(KeysFact{Iat: iat, JWKS: []byte(jwks(t, kid)), Revoked: revoked, MaxTokenLifetime: 3600}, signer)
	if err != nil {
		t.Fatal(err)
	}
	return string(v)
}

// groupsFact is the signed groups value for subject key sk.
func groupsFact(t *testing.T, signer ed25519.PrivateKey, sk string, f GroupsFact) string {
	t.Helper()
	v, err := SignGroups(sk, f, signer)
	if err != nil {
		t.Fatal(err)
	}
	return string(v)
}

func TestRevokedSession(t *testing.T) {
	s := New()
	if s.Revoked("sid1", "u1", 100, now) {
		t.Fatal("revoked before any fact")
	}
	mustApply(t, s, "revoke.session.sid1", "", `{"exp":1700003600}`)
	tests := []struct {
		name string
		sid  string
		at   time.Time
		want bool
	}{
		{"same session", "sid1", now, true},
		{"other session", "sid2", now, false},
		{"empty sid never matches", "", now, false},
		{"just after exp, within grace", "sid1", time.Unix(1700003600+60, 0), true},
		{"long after exp", "sid1", time.Unix(1700003600, 0).Add(PruneGrace + time.Second), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := s.Revoked(tt.sid, "u1", 100, tt.at); got != tt.want {
				t.Fatalf("Revoked = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestRevokedUser(t *testing.T) {
	s := New()
	mustApply(t, s, "revoke.user.u1", "", `{"before":1000,"exp":1700003600}`)
	tests := []struct {
		name string
		key  string
		iat  int64
		want bool
	}{
		{"issued before", "u1", 999, true},
		{"issued at before", "u1", 1000, true},
		{"issued after (new login)", "u1", 1001, false},
		{"other user", "u2", 999, false},
	}
	for _, tt := range tests {
		if got := s.Revoked("sid", tt.key, tt.iat, now); got != tt.want {
			t.Fatalf("%s: Revoked = %v, want %v", tt.name, got, tt.want)
		}
	}
}

// Attack: a writer of the edge bucket deletes, purges or overwrites a
// revocation with a shorter one to bring a revoked token back.
func TestRevocationsCannotBeShortenedOrDeleted(t *testing.T) {
	s := New()
	mustApply(t, s, "revoke.session.sid1", "", `{"exp":1700003600}`)
	mustApply(t, s, "revoke.user.u1", "", `{"before":1000,"exp":1700003600}`)
	for _, op := range []string{"DEL", "PURGE"} {
		for _, key := range []string{"revoke.session.sid1", "revoke.user.u1"} {
			if err := s.Apply(key, op, nil, 0, now); !errors.Is(err, ErrImmutable) {
				t.Fatalf("%s %s: err = %v, want ErrImmutable", op, key, err)
			}
		}
	}
	v := s.Version()
	mustApply(t, s, "revoke.session.sid1", "", `{"exp":1}`)
	mustApply(t, s, "revoke.user.u1", "", `{"before":1,"exp":1}`)
	if s.Version() != v {
		t.Fatal("a shorter revocation counted as a change")
	}
	if !s.Revoked("sid1", "", 100, now) || !s.Revoked("", "u1", 999, now) {
		t.Fatal("a deleted or shortened revocation let the token back in")
	}
	// Growing is a change: a later revocation of the same user.
	mustApply(t, s, "revoke.user.u1", "", `{"before":2000,"exp":1700007200}`)
	if s.Version() == v || !s.Revoked("", "u1", 1999, time.Unix(1700007000, 0)) {
		t.Fatal("a longer user revocation was not applied")
	}
}

func TestGroupsOverride(t *testing.T) {
	s := anchored()
	if _, ok := s.GroupsOverride("u1", 10); ok {
		t.Fatal("override before any fact")
	}
	mustApply(t, s, "groups.u1", "", groupsFact(t, anchor, "u1", GroupsFact{Iat: 1, Groups: []string{"a", "b"}, At: 1000, Exp: 1700003600}))
	tests := []struct {
		iat  int64
		want []string
		ok   bool
	}{
		{999, []string{"a", "b"}, true},
		{1000, []string{"a", "b"}, true},
		{1001, nil, false},
	}
	for _, tt := range tests {
		got, ok := s.GroupsOverride("u1", tt.iat)
		if ok != tt.ok || !reflect.DeepEqual(got, tt.want) {
			t.Fatalf("iat %d: GroupsOverride = %v, %v; want %v, %v", tt.iat, got, ok, tt.want, tt.ok)
		}
	}
	// Latest wins; an empty list is a real answer (no groups).
	mustApply(t, s, "groups.u1", "", groupsFact(t, anchor, "u1", GroupsFact{Iat: 2, Groups: []string{}, At: 2000}))
	if got, ok := s.GroupsOverride("u1", 1500); !ok || len(got) != 0 || got == nil {
		t.Fatalf("empty override = %v, %v", got, ok)
	}
	if err := s.Apply("groups.u1", "DEL", nil, 0, now); !errors.Is(err, ErrImmutable) {
		t.Fatalf("DEL of a groups fact: err = %v, want ErrImmutable", err)
	}
	mustApply(t, s, "groups.u1", "", groupsFact(t, anchor, "u1", GroupsFact{Iat: 3, Clear: true, At: 3000}))
	if _, ok := s.GroupsOverride("u1", 1); ok {
		t.Fatal("override after a signed clear")
	}
}

// Attack: a writer of the edge bucket puts a groups fact that grants
// "admins": unsigned, signed by another key, signed for another user, or a
// replay of an older override after a change.
func TestGroupsFactRefusedUnlessSignedForItsKey(t *testing.T) {
	s := anchored()
	mustApply(t, s, "groups.u1", "", groupsFact(t, anchor, "u1", GroupsFact{Iat: 100, Groups: []string{"staff"}, At: 1000}))
	grant := GroupsFact{Iat: 200, Groups: []string{"admins"}, At: 1000}
	cases := []struct {
		name, key, value string
		want             error
	}{
		{"Unsigned", "groups.u1", `{"key":"groups.u1","iat":200,"groups":["admins"],"at":1000}`, ErrUnsigned},
		{"RogueSigner", "groups.u1", groupsFact(t, rogue, "u1", grant), ErrUnsigned},
		{"CopiedFromAnotherUser", "groups.u1", groupsFact(t, anchor, "u2", grant), ErrUnsigned},
		{"OlderReplay", "groups.u1", groupsFact(t, anchor, "u1", GroupsFact{Iat: 50, Groups: []string{"admins"}, At: 1000}), ErrRollback},
		{"SessionTokenAsFact", "groups.u1", sessionToken(t), ErrUnsigned},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			if err := s.Apply(tt.key, "", []byte(tt.value), 0, now); !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if g, _ := s.GroupsOverride("u1", 1); len(g) != 1 || g[0] != "staff" {
				t.Fatalf("groups now %v, want [staff]", g)
			}
		})
	}
	// A clear, then the override it cleared replayed: still refused.
	mustApply(t, s, "groups.u1", "", groupsFact(t, anchor, "u1", GroupsFact{Iat: 300, Clear: true, At: 1000}))
	if err := s.Apply("groups.u1", "", []byte(groupsFact(t, anchor, "u1", GroupsFact{Iat: 100, Groups: []string{"staff"}, At: 1000})), 0, now); !errors.Is(err, ErrRollback) {
		t.Fatalf("replay after clear: err = %v, want ErrRollback", err)
	}
}

// sessionToken is a valid session token signed by the anchor key: a token
// must never verify as a fact.
func sessionToken(t *testing.T) string {
	t.Helper()
	raw, err := token.Sign(&token.Claims{Subject: "u1", IssuedAt: 1, Expiry: 2}, token.AnchorID(anchor.Public().(ed25519.PublicKey)), anchor)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func TestKeys(t *testing.T) {
	s := anchored()
	if s.Keys() != nil || s.MaxTokenLifetime() != 0 {
		t.Fatal("keys before any entry")
	}
	mustApply(t, s, "keys", "", keysFact(t, anchor, "k1", 1))
	if _, ok := s.Keys().Lookup("k1"); !ok {
		t.Fatal("k1 missing")
	}
	if s.MaxTokenLifetime() != 3600 || !s.TooLong(0, 3601) || s.TooLong(0, 3600) {
		t.Fatalf("MaxTokenLifetime = %d", s.MaxTokenLifetime())
	}
	// A bad JWKS is refused and the previous keys stay.
	bad, err := SignKeys(KeysFact{Iat: 2, JWKS: []byte(`{"keys":[]}`), MaxTokenLifetime: 3600}, anchor)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Apply("keys", "", bad, 0, now); !errors.Is(err, ErrMalformedValue) {
		t.Fatalf("empty JWKS: err = %v", err)
	}
	if _, ok := s.Keys().Lookup("k1"); !ok {
		t.Fatal("previous keys lost after a bad JWKS")
	}
	mustApply(t, s, "keys", "", keysFact(t, anchor, "k2", 3))
	if _, ok := s.Keys().Lookup("k1"); ok {
		t.Fatal("keys entry did not replace the set")
	}
	if err := s.Apply("keys", "DEL", nil, 0, now); !errors.Is(err, ErrImmutable) {
		t.Fatalf("DEL keys: err = %v, want ErrImmutable", err)
	}
	if _, ok := s.Keys().Lookup("k2"); !ok {
		t.Fatal("keys lost after a DEL")
	}
}

// Attack: a writer of the edge bucket (not the daemon) replaces the edges'
// verification keys with its own, to have tokens it mints accepted.
func TestKeysFactRefusedUnlessSignedByAnchor(t *testing.T) {
	s := anchored()
	mustApply(t, s, "keys", "", keysFact(t, anchor, "k1", 100))
	cases := []struct {
		name, value string
		want        error
	}{
		{"PlainJWKS", jwks(t, "evil"), ErrUnsigned},
		{"RogueSigner", keysFact(t, rogue, "evil", 200), ErrUnsigned},
		{"OlderReplay", keysFact(t, anchor, "evil", 50), ErrRollback},
		{"SessionTokenAsFact", sessionToken(t), ErrUnsigned},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			if err := s.Apply("keys", "", []byte(tt.value), 0, now); !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if _, ok := s.Keys().Lookup("evil"); ok {
				t.Fatal("a forged key was installed")
			}
		})
	}
	// A state without anchors takes no keys at all.
	if err := New().Apply("keys", "", []byte(keysFact(t, anchor, "k1", 1)), 0, now); !errors.Is(err, ErrUnsigned) {
		t.Fatalf("no anchors: err = %v, want ErrUnsigned", err)
	}
}

// A revoked key id never verifies again, even if a later keys fact lists it.
func TestRevokedKeyStaysRevoked(t *testing.T) {
	s := anchored()
	mustApply(t, s, "keys", "", keysFact(t, anchor, "k1", 1))
	mustApply(t, s, "keys", "", keysFact(t, anchor, "k2", 2, "k1"))
	if !s.KeyRevoked("k1") {
		t.Fatal("k1 not revoked")
	}
	mustApply(t, s, "keys", "", keysFact(t, anchor, "k1", 3))
	if _, ok := s.Keys().Lookup("k1"); ok {
		t.Fatal("a revoked key came back")
	}
}

func TestVersionChangesOnEveryChange(t *testing.T) {
	s := anchored()
	v := s.Version()
	steps := []struct{ key, op, value string }{
		{"revoke.session.a", "", `{"exp":1}`},
		{"revoke.user.b", "", `{"before":1}`},
		{"groups.c", "", groupsFact(t, anchor, "c", GroupsFact{Iat: 1, Groups: []string{"x"}, At: 1})},
		{"keys", "", keysFact(t, anchor, "k", 1)},
		{"revoke.session.a", "", `{"exp":2}`},
	}
	for _, st := range steps {
		mustApply(t, s, st.key, st.op, st.value)
		if s.Version() == v {
			t.Fatalf("version unchanged after %s %s", st.op, st.key)
		}
		v = s.Version()
	}
	_ = s.Apply("nonsense", "", []byte(`{}`), 0, now)
	if s.Version() != v {
		t.Fatal("version changed on a rejected entry")
	}
}

// Attack/robustness: anything on the bucket that is not a well-formed fact must be
// ignored (counted, reported) and never change a decision.
func TestApplyRejectsMalformedEntries(t *testing.T) {
	tests := []struct {
		name, key, op, value string
		want                 error
	}{
		{"UnknownKey", "something.else", "", `{}`, ErrUnknownKey},
		{"BarePrefix", "revoke.session.", "", `{"exp":1}`, ErrUnknownKey},
		{"WildcardID", "revoke.user.*", "", `{"before":1}`, ErrUnknownKey},
		{"DottedID", "groups.a.b", "", `{"groups":[],"at":1}`, ErrUnknownKey},
		{"KeyTooLong", "revoke.session." + strings.Repeat("a", MaxKeyLength), "", `{"exp":1}`, ErrTooLarge},
		{"ValueTooLarge", "groups.u", "", `{"groups":["` + strings.Repeat("a", MaxValueSize) + `"],"at":1}`, ErrTooLarge},
		{"UnknownOp", "revoke.session.a", "ROLLUP", `{"exp":1}`, ErrUnknownOp},
		{"SessionNotJSON", "revoke.session.a", "", `exp=1`, ErrMalformedValue},
		{"SessionNull", "revoke.session.a", "", `null`, ErrMalformedValue},
		{"SessionArray", "revoke.session.a", "", `[1]`, ErrMalformedValue},
		{"SessionExpString", "revoke.session.a", "", `{"exp":"1"}`, ErrMalformedValue},
		{"SessionNegativeExp", "revoke.session.a", "", `{"exp":-1}`, ErrMalformedValue},
		{"UserMissingBefore", "revoke.user.u", "", `{"exp":1}`, ErrMalformedValue},
		{"UserZeroBefore", "revoke.user.u", "", `{"before":0}`, ErrMalformedValue},
		{"UserBeforeFloat", "revoke.user.u", "", `{"before":1.5}`, ErrMalformedValue},
		{"UserNegativeExp", "revoke.user.u", "", `{"before":1, "exp":-1}`, ErrMalformedValue},
		{"GroupsMissing", "groups.u", "", groupsFact(t, anchor, "u", GroupsFact{Iat: 1, At: 1}), ErrMalformedValue},
		{"GroupsNotStrings", "groups.u", "", signedPayload(t, `{"key":"groups.u","iat":1,"groups":[1],"at":1}`), ErrMalformedValue},
		{"GroupsMissingAt", "groups.u", "", groupsFact(t, anchor, "u", GroupsFact{Iat: 1, Groups: []string{"a"}}), ErrMalformedValue},
		{"GroupsUnsigned", "groups.u", "", `{"groups":["a"],"at":1}`, ErrUnsigned},
		{"GroupsTrailingGarbage", "groups.u", "", groupsFact(t, anchor, "u", GroupsFact{Iat: 1, Groups: []string{"a"}, At: 1}) + "x", ErrUnsigned},
		{"KeysNotJWS", "keys", "", `hello`, ErrUnsigned},
		{"KeysNoLifetime", "keys", "", signedPayload(t, `{"key":"keys","iat":1,"jwks":`+jwks(t, "k")+`}`), ErrMalformedValue},
		{"KeysNotJWKS", "keys", "", signedPayload(t, `{"key":"keys","iat":1,"jwks":"hello","maxTokenLifetime":1}`), ErrMalformedValue},
		{"DeleteUnknown", "nonsense", "DEL", ``, ErrUnknownKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := anchored()
			before := s.Version()
			err := s.Apply(tt.key, tt.op, []byte(tt.value), 7, now)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			st := s.Stats()
			if st.Rejected != 1 || st.Applied != 0 || st.Sessions+st.Users+st.Groups+st.Keys != 0 {
				t.Fatalf("stats after a rejected entry: %+v", st)
			}
			if s.Version() != before {
				t.Fatal("version changed")
			}
			if s.LastSeq() != 7 {
				t.Fatalf("LastSeq = %d, want 7 (a rejected entry is still consumed)", s.LastSeq())
			}
		})
	}
}

// signedPayload signs an arbitrary payload with the anchor.
func signedPayload(t *testing.T, payload string) string {
	t.Helper()
	raw, err := token.SignFact([]byte(payload), anchor)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func TestPruneDropsExpiredFacts(t *testing.T) {
	s := anchored()
	mustApply(t, s, "revoke.session.old", "", `{"exp":100}`)
	mustApply(t, s, "revoke.session.live", "", `{"exp":1700003600}`)
	mustApply(t, s, "revoke.session.forever", "", `{}`)
	mustApply(t, s, "revoke.user.old", "", `{"before":50,"exp":100}`)
	mustApply(t, s, "groups.old", "", groupsFact(t, anchor, "old", GroupsFact{Iat: 1, Groups: []string{"a"}, At: 50, Exp: 100}))
	mustApply(t, s, "groups.live", "", groupsFact(t, anchor, "live", GroupsFact{Iat: 1, Groups: []string{"a"}, At: 50, Exp: 1700003600}))
	v := s.Version()
	if n := s.Prune(now); n != 3 {
		t.Fatalf("Prune = %d, want 3", n)
	}
	// Every token a pruned fact covered has expired: no decision changes,
	// so no cache is emptied.
	if s.Version() != v {
		t.Fatal("Prune moved the version")
	}
	st := s.Stats()
	if st.Sessions != 2 || st.Users != 0 || st.Groups != 1 {
		t.Fatalf("after prune: %+v", st)
	}
	if !s.Revoked("forever", "", 0, now) || !s.Revoked("live", "", 0, now) {
		t.Fatal("live facts pruned")
	}
	v = s.Version()
	if n := s.Prune(now); n != 0 || s.Version() != v {
		t.Fatal("second prune changed something")
	}
}

func TestHeardSyncedSeq(t *testing.T) {
	s := New()
	if !s.LastHeard().IsZero() || s.Synced() {
		t.Fatal("fresh state claims to have heard from NATS")
	}
	s.Touch(now)
	if !s.LastHeard().Equal(now) {
		t.Fatalf("LastHeard = %v", s.LastHeard())
	}
	s.SetSynced(true)
	if !s.Synced() {
		t.Fatal("not synced")
	}
	s.SetSynced(false)
	if s.Synced() {
		t.Fatal("still synced")
	}
	_ = s.Apply("revoke.session.a", "", []byte(`{"exp":1}`), 42, now)
	_ = s.Apply("revoke.session.b", "", []byte(`{"exp":1}`), 41, now) // out of order: keep the highest
	if s.LastSeq() != 42 {
		t.Fatalf("LastSeq = %d", s.LastSeq())
	}
	if st := s.Stats(); st.Applied != 2 || st.LastSeq != 42 {
		t.Fatalf("stats %+v", st)
	}
}

func TestConcurrentReadersAndWriters(t *testing.T) {
	s := anchored()
	groups := []byte(groupsFact(t, anchor, "u", GroupsFact{Iat: 1, Groups: []string{"a"}, At: 5}))
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for i := 0; i < 2000; i++ {
				_ = s.Apply("revoke.session.s", "", []byte(`{"exp":1700003600}`), uint64(i), now)
				_ = s.Apply("groups.u", "", groups, uint64(i), now)
				s.Prune(now)
			}
		}()
		go func() {
			defer wg.Done()
			for i := 0; i < 2000; i++ {
				s.Revoked("s", "u", 1, now)
				s.GroupsOverride("u", 1)
				s.Keys()
				s.Version()
				s.Stats()
			}
		}()
	}
	wg.Wait()
}

func FuzzApply(f *testing.F) {
	f.Add("revoke.session.abc", "", []byte(`{"exp":1700003600}`))
	f.Add("revoke.user.abc", "", []byte(`{"before":1,"exp":2}`))
	f.Add("groups.abc", "", []byte(`{"groups":["a"],"at":1,"exp":2}`))
	f.Add("groups.abc", "DEL", []byte(nil))
	f.Add("keys", "", []byte(`{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"test","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}`))
	f.Add("keys", "PURGE", []byte(nil))
	f.Add("x", "?", []byte(`{`))
	for _, seed := range [][2]string{
		{"groups.abc", `{"key":"groups.abc","iat":1,"groups":["a"],"at":1,"exp":2}`},
		{"groups.abc", `{"key":"groups.abc","iat":1,"clear":true,"at":1}`},
		{"keys", `{"key":"keys","iat":1,"jwks":{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"test","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]},"maxTokenLifetime":60,"revoked":["x"]}`},
	} {
		raw, err := token.SignFact([]byte(seed[1]), anchor)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(seed[0], "", []byte(raw))
	}
	f.Fuzz(func(t *testing.T, key, op string, value []byte) {
		s := anchored()
		v := s.Version()
		err := s.Apply(key, op, value, 1, now)
		st := s.Stats()
		if err != nil {
			if s.Version() != v || st.Rejected != 1 || st.Applied != 0 {
				t.Fatalf("rejected entry changed state: %+v", st)
			}
			return
		}
		if st.Applied != 1 {
			t.Fatalf("applied entry not counted: %+v", st)
		}
		if st.Sessions+st.Users+st.Groups > 1 {
			t.Fatalf("one entry created several facts: %+v", st)
		}
		s.Revoked("abc", "abc", 1, now)
		s.GroupsOverride("abc", 1)
		s.Prune(now)
	})
}

// OnChange runs after every applied change, with the version already moved,
// saying what the change can affect, and not for refused entries nor for
// Prune; every registered function runs (a second registration once
// silently replaced the first, switching off fast-path eviction).
func TestOnChangeFollowsEveryChange(t *testing.T) {
	s := anchored()
	calls := 0
	var seen []uint64
	var scopes []Change
	s.OnChange(func(c Change) {
		calls++
		seen = append(seen, s.Version())
		scopes = append(scopes, c)
	})
	other := 0
	s.OnChange(func(Change) { other++ })
	now := time.Unix(1_700_000_000, 0)
	exp := strconv.FormatInt(now.Unix()+60, 10)
	if err := s.Apply("revoke.session.a", "", []byte(`{"exp":`+exp+`}`), 1, now); err != nil {
		t.Fatal(err)
	}
	if err := s.Apply("revoke.session.a", "", []byte(`{"exp":`+strconv.FormatInt(now.Unix()+120, 10)+`}`), 2, now); err != nil {
		t.Fatal(err)
	}
	if err := s.Apply("nonsense", "", []byte(`{}`), 3, now); err == nil {
		t.Fatal("unknown key accepted")
	}
	if calls != 2 || seen[0] != 1 || seen[1] != 2 || other != 2 {
		t.Fatalf("OnChange ran %d (and %d) times at versions %v, want 2 at [1 2]", calls, other, seen)
	}
	if err := s.Apply("revoke.session.b", "", []byte(`{"exp":`+strconv.FormatInt(now.Unix()-3600, 10)+`}`), 4, now); err != nil {
		t.Fatal(err)
	}
	if s.Prune(now) != 1 || calls != 3 {
		t.Fatalf("Prune: OnChange ran %d times in all, want 3", calls)
	}
	mustApply(t, s, "revoke.user.u9", "", `{"before":1}`)
	mustApply(t, s, "groups.u8", "", groupsFact(t, anchor, "u8", GroupsFact{Iat: 1, Groups: []string{"x"}, At: 1}))
	mustApply(t, s, "keys", "", keysFact(t, anchor, "k", 1))
	want := []Change{{SessionID: "a"}, {SessionID: "a"}, {SessionID: "b"}, {SubjectKey: "u9"}, {SubjectKey: "u8"}, {All: true}}
	if !reflect.DeepEqual(scopes, want) {
		t.Fatalf("scopes %+v, want %+v", scopes, want)
	}
}

// A state being replayed is current only as of when it last was in sync:
// before the first sync never, after a reconnect as of the disconnect, however
// recent the replayed messages are.
func TestCurrentAsOfFreezesWhileReplaying(t *testing.T) {
	s := New()
	t0 := time.Unix(1_700_000_000, 0)
	s.Touch(t0)
	if got := s.CurrentAsOfUnix(); got != 0 {
		t.Fatalf("before the first sync: current as of %d, want 0", got)
	}
	s.SetSynced(true)
	s.Touch(t0.Add(10 * time.Second))
	if got := s.CurrentAsOfUnix(); got != t0.Unix()+10 {
		t.Fatalf("synced: current as of %d, want %d", got, t0.Unix()+10)
	}
	s.SetSynced(false)                 // disconnect
	s.Touch(t0.Add(100 * time.Second)) // replayed messages after the reconnect
	s.SetSynced(false)                 // a resync while still replaying must not move it
	if got := s.CurrentAsOfUnix(); got != t0.Unix()+10 {
		t.Fatalf("replaying: current as of %d, want the disconnect's %d", got, t0.Unix()+10)
	}
	s.SetSynced(true)
	if got := s.CurrentAsOfUnix(); got != t0.Unix()+100 {
		t.Fatalf("caught up: current as of %d, want %d", got, t0.Unix()+100)
	}
}

// The daemon republishes an unchanged JWKS at every start and periodically:
// that is no change, so edges keep their verified tokens and fast paths.
func TestRepublishedKeysAreNoChange(t *testing.T) {
	s := anchored()
	calls := 0
	s.OnChange(func(Change) { calls++ })
	mustApply(t, s, "keys", "", keysFact(t, anchor, "k1", 1))
	held := s.Keys()
	mustApply(t, s, "keys", "", keysFact(t, anchor, "k1", 2))
	if calls != 1 || s.Keys() != held {
		t.Fatalf("an unchanged JWKS ran OnChange %d times in all (want 1) or replaced the set", calls)
	}
	mustApply(t, s, "keys", "", keysFact(t, anchor, "k2", 3))
	if calls != 2 || s.Keys() == held {
		t.Fatal("a new JWKS was not a change")
	}
}
