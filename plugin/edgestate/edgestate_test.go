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
	mustApply(t, s, "revoke.session.sid1", "DEL", "")
	if s.Revoked("sid1", "u1", 100, now) {
		t.Fatal("still revoked after DEL")
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
	mustApply(t, s, "revoke.user.u1", "PURGE", "")
	if s.Revoked("sid", "u1", 999, now) {
		t.Fatal("still revoked after PURGE")
	}
}

func TestGroupsOverride(t *testing.T) {
	s := New()
	if _, ok := s.GroupsOverride("u1", 10); ok {
		t.Fatal("override before any fact")
	}
	mustApply(t, s, "groups.u1", "", `{"groups":["a","b"],"at":1000,"exp":1700003600}`)
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
	mustApply(t, s, "groups.u1", "", `{"groups":[],"at":2000}`)
	if got, ok := s.GroupsOverride("u1", 1500); !ok || len(got) != 0 || got == nil {
		t.Fatalf("empty override = %v, %v", got, ok)
	}
	mustApply(t, s, "groups.u1", "DEL", "")
	if _, ok := s.GroupsOverride("u1", 1); ok {
		t.Fatal("override after DEL")
	}
}

func TestKeys(t *testing.T) {
	s := New()
	if s.Keys() != nil {
		t.Fatal("keys before any entry")
	}
	mustApply(t, s, "keys", "", jwks(t, "k1"))
	if _, ok := s.Keys().Lookup("k1"); !ok {
		t.Fatal("k1 missing")
	}
	// A bad JWKS is refused and the previous keys stay.
	if err := s.Apply("keys", "", []byte(`{"keys":[]}`), 0, now); !errors.Is(err, ErrMalformedValue) {
		t.Fatalf("empty JWKS: err = %v", err)
	}
	if _, ok := s.Keys().Lookup("k1"); !ok {
		t.Fatal("previous keys lost after a bad JWKS")
	}
	mustApply(t, s, "keys", "", jwks(t, "k2"))
	if _, ok := s.Keys().Lookup("k1"); ok {
		t.Fatal("keys entry did not replace the set")
	}
	mustApply(t, s, "keys", "DEL", "")
	if s.Keys() != nil {
		t.Fatal("keys after DEL")
	}
}

func TestVersionChangesOnEveryChange(t *testing.T) {
	s := New()
	v := s.Version()
	steps := []struct{ key, op, value string }{
		{"revoke.session.a", "", `{"exp":1}`},
		{"revoke.user.b", "", `{"before":1}`},
		{"groups.c", "", `{"groups":["x"],"at":1}`},
		{"keys", "", jwks(t, "k")},
		{"revoke.session.a", "DEL", ""},
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
		{"GroupsMissing", "groups.u", "", `{"at":1}`, ErrMalformedValue},
		{"GroupsNotStrings", "groups.u", "", `{"groups":[1],"at":1}`, ErrMalformedValue},
		{"GroupsMissingAt", "groups.u", "", `{"groups":["a"]}`, ErrMalformedValue},
		{"GroupsTrailingGarbage", "groups.u", "", `{"groups":["a"],"at":1}x`, ErrMalformedValue},
		{"KeysNotJWKS", "keys", "", `hello`, ErrMalformedValue},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := New()
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

func TestPruneDropsExpiredFacts(t *testing.T) {
	s := New()
	mustApply(t, s, "revoke.session.old", "", `{"exp":100}`)
	mustApply(t, s, "revoke.session.live", "", `{"exp":1700003600}`)
	mustApply(t, s, "revoke.session.forever", "", `{}`)
	mustApply(t, s, "revoke.user.old", "", `{"before":50,"exp":100}`)
	mustApply(t, s, "groups.old", "", `{"groups":["a"],"at":50,"exp":100}`)
	mustApply(t, s, "groups.live", "", `{"groups":["a"],"at":50,"exp":1700003600}`)
	v := s.Version()
	if n := s.Prune(now); n != 3 {
		t.Fatalf("Prune = %d, want 3", n)
	}
	if s.Version() == v {
		t.Fatal("Prune did not bump the version")
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
	if !s.LastHeard().IsZero() || s.LastHeardUnix() != 0 || s.Synced() {
		t.Fatal("fresh state claims to have heard from NATS")
	}
	s.Touch(now)
	if !s.LastHeard().Equal(now) || s.LastHeardUnix() != now.Unix() {
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
	s := New()
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for i := 0; i < 2000; i++ {
				_ = s.Apply("revoke.session.s", "", []byte(`{"exp":1700003600}`), uint64(i), now)
				_ = s.Apply("groups.u", "", []byte(`{"groups":["a"],"at":5}`), uint64(i), now)
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
	f.Fuzz(func(t *testing.T, key, op string, value []byte) {
		s := New()
		v := s.Version()
		err := s.Apply(key, op, value, 1, now)
		st := s.Stats()
		if err != nil {
			if s.Version() != v || st.Rejected != 1 || st.Applied != 0 {
				t.Fatalf("rejected entry changed state: %+v", st)
			}
			return
		}
		if s.Version() == v || st.Applied != 1 {
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
// and not for refused entries.
func TestOnChangeFollowsEveryChange(t *testing.T) {
	s := New()
	calls := 0
	var seen []uint64
	s.OnChange(func() {
		calls++
		seen = append(seen, s.Version())
	})
	now := time.Unix(1_700_000_000, 0)
	exp := strconv.FormatInt(now.Unix()+60, 10)
	if err := s.Apply("revoke.session.a", "", []byte(`{"exp":`+exp+`}`), 1, now); err != nil {
		t.Fatal(err)
	}
	if err := s.Apply("revoke.session.a", "DEL", nil, 2, now); err != nil {
		t.Fatal(err)
	}
	if err := s.Apply("nonsense", "", []byte(`{}`), 3, now); err == nil {
		t.Fatal("unknown key accepted")
	}
	if calls != 2 || seen[0] != 1 || seen[1] != 2 {
		t.Fatalf("OnChange ran %d times at versions %v, want 2 at [1 2]", calls, seen)
	}
	if err := s.Apply("revoke.session.b", "", []byte(`{"exp":`+strconv.FormatInt(now.Unix()-3600, 10)+`}`), 4, now); err != nil {
		t.Fatal(err)
	}
	if s.Prune(now) != 1 || calls != 4 {
		t.Fatalf("Prune: OnChange ran %d times in all, want 4", calls)
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
	s := New()
	calls := 0
	s.OnChange(func() { calls++ })
	mustApply(t, s, "keys", "", jwks(t, "k1"))
	held := s.Keys()
	mustApply(t, s, "keys", "", jwks(t, "k1"))
	if calls != 1 || s.Keys() != held {
		t.Fatalf("an unchanged JWKS ran OnChange %d times in all (want 1) or replaced the set", calls)
	}
	mustApply(t, s, "keys", "", jwks(t, "k2"))
	if calls != 2 || s.Keys() == held {
		t.Fatal("a new JWKS was not a change")
	}
}
