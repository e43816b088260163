package edgestate

import (
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgepass/edgepass/plugin/token"
)

// liveNow is the clock of snapshot tests: applySnapshot drops records
// expired by the real clock.
var liveNow = time.Now()

func liveExp() int64 { return liveNow.Add(time.Hour).Unix() }

// populated is a daemon-side state with n session revocations (sid-<i>, at
// sequences 1..n), two user revocations, a group override, a cleared
// override and a keys fact.
func populated(t *testing.T, n int) *State {
	t.Helper()
	s := anchored()
	seq := uint64(0)
	put := func(key, value string) {
		t.Helper()
		seq++
		if err := s.Apply(key, "", []byte(value), seq, liveNow); err != nil {
			t.Fatalf("Apply(%s): %v", key, err)
		}
	}
	for i := 0; i < n; i++ {
		put(PrefixRevokeSession+"sid-"+strconv.Itoa(i), fmt.Sprintf(`{"exp":%d}`, liveExp()))
	}
	put(PrefixRevokeSession+"forever", `{"exp":0}`)
	put(PrefixRevokeUser+"u1", fmt.Sprintf(`{"before":1000,"exp":%d}`, liveExp()))
	put(PrefixRevokeUser+"u2", `{"before":2000,"exp":0}`)
	put(PrefixGroups+"g1", groupsFact(t, anchor, "g1", GroupsFact{Iat: 10, Groups: []string{"ops", "dev"}, At: 5000, Exp: liveExp()}))
	put(PrefixGroups+"g2", groupsFact(t, anchor, "g2", GroupsFact{Iat: 10, Groups: []string{"x"}, At: 5000, Exp: liveExp()}))
	put(PrefixGroups+"g2", groupsFact(t, anchor, "g2", GroupsFact{Iat: 20, Clear: true, At: 6000, Exp: liveExp()}))
	put(KeyKeys, keysFact(t, anchor, "k1", 30, "old-kid"))
	return s
}

// sameDecisions fails unless a and b decide alike on every fact populated wrote.
func sameDecisions(t *testing.T, a, b *State, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		sid := "sid-" + strconv.Itoa(i)
		if a.SessionRevoked(sid, liveNow) != b.SessionRevoked(sid, liveNow) {
			t.Fatalf("session %s: %v vs %v", sid, a.SessionRevoked(sid, liveNow), b.SessionRevoked(sid, liveNow))
		}
	}
	for _, sid := range []string{"forever", "never-revoked"} {
		if a.SessionRevoked(sid, liveNow) != b.SessionRevoked(sid, liveNow) {
			t.Fatalf("session %s differs", sid)
		}
	}
	for _, u := range []string{"u1", "u2", "u3"} {
		for _, iat := range []int64{999, 1000, 1001, 2000, 2001} {
			if a.UserRevoked(u, iat, liveNow) != b.UserRevoked(u, iat, liveNow) {
				t.Fatalf("user %s at %d differs", u, iat)
			}
		}
	}
	for _, g := range []string{"g1", "g2", "g3"} {
		ga, oka := a.GroupsOverride(g, 100)
		gb, okb := b.GroupsOverride(g, 100)
		if oka != okb || strings.Join(ga, ",") != strings.Join(gb, ",") {
			t.Fatalf("groups %s: %v %v vs %v %v", g, ga, oka, gb, okb)
		}
	}
	if !a.Keys().Equal(b.Keys()) || a.KeyRevoked("old-kid") != b.KeyRevoked("old-kid") || a.MaxTokenLifetime() != b.MaxTokenLifetime() {
		t.Fatal("keys differ")
	}
	sa, sb := a.Stats(), b.Stats()
	if sa.Sessions != sb.Sessions || sa.Users != sb.Users || sa.Groups != sb.Groups || sa.Keys != sb.Keys {
		t.Fatalf("stats %+v vs %+v", sa, sb)
	}
}

func signCut(t *testing.T, s *State, gen string) ([][]byte, uint64) {
	t.Helper()
	values, seq, err := s.Cut().Sign(gen, liveNow.UnixMilli(), anchor)
	if err != nil {
		t.Fatal(err)
	}
	return values, seq
}

func load(t *testing.T, l *SnapshotLoader, values [][]byte) {
	t.Helper()
	for i, v := range values {
		if err := l.Add(SnapshotKey(i), "", v, 0, time.Time{}); err != nil {
			t.Fatalf("chunk %d: %v", i, err)
		}
	}
}

func TestSnapshotRoundTripGivesTheSameDecisions(t *testing.T) {
	const n = 5000
	src := populated(t, n)
	values, seq := signCut(t, src, "gen1")
	if seq != src.LastSeq() {
		t.Fatalf("seq %d, want the state's %d", seq, src.LastSeq())
	}
	if len(values) < 3 {
		t.Fatalf("%d chunks for %d revocations: the test no longer spans chunks", len(values), n)
	}
	for i, v := range values {
		if len(v) > 62<<10 {
			t.Fatalf("chunk %d is %d bytes: not well under MaxValueSize", i, len(v))
		}
	}
	dst := anchored()
	changes := 0
	dst.OnChange(func(c Change) {
		if !c.All {
			t.Errorf("a snapshot chunk reported %+v, want All", c)
		}
		changes++
	})
	l := dst.NewSnapshotLoader()
	load(t, l, values)
	gen, got, ok := l.Best()
	if !ok || gen != "gen1" || got != seq {
		t.Fatalf("Best = %s %d %v", gen, got, ok)
	}
	l.Adopt(got, liveNow)
	if dst.LastSeq() != seq || changes != len(values) || l.Facts != src.Cut().Facts() {
		t.Fatalf("LastSeq %d changes %d facts %d", dst.LastSeq(), changes, l.Facts)
	}
	sameDecisions(t, src, dst, n)
	// A replay of facts already held (everything after a lower seq) changes nothing.
	v := dst.Version()
	mustApply(t, dst, PrefixRevokeSession+"sid-1", "", fmt.Sprintf(`{"exp":%d}`, liveExp()))
	if dst.Version() != v {
		t.Fatal("a replayed revocation moved the version")
	}
	// The cleared override is carried (its clear fact), so an older
	// override replayed at the edge after the snapshot stays refused.
	old := groupsFact(t, anchor, "g2", GroupsFact{Iat: 10, Groups: []string{"x"}, At: 5000, Exp: liveExp()})
	if err := dst.Apply(PrefixGroups+"g2", "", []byte(old), 0, liveNow); !errors.Is(err, ErrRollback) {
		t.Fatalf("replayed override after a snapshot's clear: %v, want ErrRollback", err)
	}
}

// Attack: someone who can write the bucket offers a snapshot claiming a
// late sequence and no revocations, so the edge would skip them all.
func TestForgedSnapshotChunkRefused(t *testing.T) {
	src := populated(t, 10)
	genuine, _ := signCut(t, src, "g")
	payload := fmt.Sprintf(`{"key":"snapshot.0","iat":%d,"gen":"evil","seq":999999,"n":1,"i":0}`, liveNow.UnixMilli())
	rogueSigned, err := token.SignFact([]byte(payload), rogue)
	if err != nil {
		t.Fatal(err)
	}
	two, _ := twoChunks(t)
	tests := []struct {
		name  string
		key   string
		value string
		want  error
	}{
		{"unsigned", "snapshot.0", payload, ErrUnsigned},
		{"rogue-signed", "snapshot.0", rogueSigned, ErrUnsigned},
		{"copied to another key", "snapshot.1", string(two[0]), ErrUnsigned},
		{"session token", "snapshot.0", sessionToken(t), ErrUnsigned},
		{"not a chunk key", "snapshot.x", string(genuine[0]), ErrUnsigned},
		{"oversized", "snapshot.0", strings.Repeat("a", MaxValueSize+1), ErrTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dst := anchored()
			l := dst.NewSnapshotLoader()
			if err := l.Add(tt.key, "", []byte(tt.value), 0, time.Time{}); !errors.Is(err, tt.want) {
				t.Fatalf("Add = %v, want %v", err, tt.want)
			}
			if _, _, ok := l.Best(); ok || l.Chunks != 0 || dst.Version() != 0 || dst.LastSeq() != 0 {
				t.Fatalf("a refused chunk was used: chunks %d version %d", l.Chunks, dst.Version())
			}
		})
	}
	t.Run("no trust anchors", func(t *testing.T) {
		l := New().NewSnapshotLoader()
		if err := l.Add("snapshot.0", "", genuine[0], 0, time.Time{}); !errors.Is(err, ErrUnsigned) {
			t.Fatalf("Add = %v", err)
		}
	})
}

// twoChunks is a genuine two-chunk generation and the state it was cut from.
func twoChunks(t *testing.T) ([][]byte, *State) {
	t.Helper()
	src := populated(t, 2500)
	values, _ := signCut(t, src, "two")
	if len(values) != 2 {
		t.Fatalf("%d chunks, want 2", len(values))
	}
	return values, src
}

func TestMixedSnapshotGenerationsNotCombined(t *testing.T) {
	src := populated(t, 2500)
	a, seqA := signCut(t, src, "genA")
	mustApply(t, src, PrefixRevokeSession+"late", "", fmt.Sprintf(`{"exp":%d}`, liveExp()))
	if err := src.Apply(PrefixRevokeSession+"later", "", []byte(`{"exp":0}`), seqA+10, liveNow); err != nil {
		t.Fatal(err)
	}
	b, seqB := signCut(t, src, "genB")
	if len(a) != 2 || len(b) != 2 || seqB <= seqA {
		t.Fatalf("chunks %d/%d seqs %d/%d", len(a), len(b), seqA, seqB)
	}
	dst := anchored()
	l := dst.NewSnapshotLoader()
	if err := l.Add("snapshot.0", "", b[0], 0, time.Time{}); err != nil {
		t.Fatal(err)
	}
	if err := l.Add("snapshot.1", "", a[1], 0, time.Time{}); err != nil {
		t.Fatal(err)
	}
	if gen, seq, ok := l.Best(); ok {
		t.Fatalf("chunks of two generations made up generation %s at %d", gen, seq)
	}
	// Either generation completed on its own is usable; the newer wins.
	if err := l.Add("snapshot.1", "", b[1], 0, time.Time{}); err != nil {
		t.Fatal(err)
	}
	if gen, seq, ok := l.Best(); !ok || gen != "genB" || seq != seqB {
		t.Fatalf("Best = %s %d %v, want genB %d", gen, seq, ok, seqB)
	}
	if err := l.Add("snapshot.0", "", a[0], 0, time.Time{}); err != nil {
		t.Fatal(err)
	}
	if gen, _, _ := l.Best(); gen != "genB" {
		t.Fatalf("Best = %s after the older generation completed too", gen)
	}
}

func TestMissingChunkLeavesNoCompleteSnapshot(t *testing.T) {
	values, _ := twoChunks(t)
	l := anchored().NewSnapshotLoader()
	if err := l.Add("snapshot.1", "", values[1], 0, time.Time{}); err != nil {
		t.Fatal(err)
	}
	if err := l.Add("snapshot.1", "PURGE", nil, 0, time.Time{}); err != nil {
		t.Fatalf("a purge marker: %v", err)
	}
	if _, _, ok := l.Best(); ok {
		t.Fatal("an incomplete generation was offered as a starting point")
	}
}

// A chunk that contradicts its generation's seq or count is refused.
func TestInconsistentChunkOfAGenerationRefused(t *testing.T) {
	src := populated(t, 2500)
	a, _ := signCut(t, src, "same")
	mustApply(t, src, PrefixRevokeSession+"x", "", `{"exp":0}`)
	if err := src.Apply(PrefixRevokeSession+"y", "", []byte(`{"exp":0}`), src.LastSeq()+5, liveNow); err != nil {
		t.Fatal(err)
	}
	b, _ := signCut(t, src, "same") // the same gen id, another cut
	l := anchored().NewSnapshotLoader()
	if err := l.Add("snapshot.0", "", a[0], 0, time.Time{}); err != nil {
		t.Fatal(err)
	}
	if err := l.Add("snapshot.1", "", b[1], 0, time.Time{}); !errors.Is(err, ErrMalformedValue) {
		t.Fatalf("Add = %v, want ErrMalformedValue", err)
	}
	if _, _, ok := l.Best(); ok {
		t.Fatal("an inconsistent generation completed")
	}
}

// A signed fact too large to embed is left to the replay: the snapshot
// claims a sequence before it.
func TestOversizedFactLowersSnapshotSeq(t *testing.T) {
	s := anchored()
	for i := 1; i <= 5; i++ {
		if err := s.Apply(PrefixRevokeSession+"s"+strconv.Itoa(i), "", []byte(`{"exp":0}`), uint64(i), liveNow); err != nil {
			t.Fatal(err)
		}
	}
	groups := make([]string, 0, 1000)
	for i := 0; i < 1000; i++ {
		groups = append(groups, fmt.Sprintf("group-with-a-rather-long-name-padded-%04d", i))
	}
	big := groupsFact(t, anchor, "big", GroupsFact{Iat: 1, Groups: groups, At: 1, Exp: liveExp()})
	if len(big) < snapshotPayloadBudget {
		t.Fatalf("fact of %d bytes fits a chunk; make it larger", len(big))
	}
	if err := s.Apply(PrefixGroups+"big", "", []byte(big), 6, liveNow); err != nil {
		t.Fatal(err)
	}
	for i := 7; i <= 9; i++ {
		if err := s.Apply(PrefixRevokeSession+"s"+strconv.Itoa(i), "", []byte(`{"exp":0}`), uint64(i), liveNow); err != nil {
			t.Fatal(err)
		}
	}
	values, seq := signCut(t, s, "g")
	if seq != 5 {
		t.Fatalf("seq = %d, want 5 (before the oversized fact at 6)", seq)
	}
	dst := anchored()
	l := dst.NewSnapshotLoader()
	load(t, l, values)
	if _, ok := dst.GroupsOverride("big", 1); ok {
		t.Fatal("the oversized fact was embedded")
	}
	// The replay from 6 brings it.
	if err := dst.Apply(PrefixGroups+"big", "", []byte(big), 6, liveNow); err != nil {
		t.Fatal(err)
	}
	if _, ok := dst.GroupsOverride("big", 1); !ok {
		t.Fatal("override not applied")
	}
}

// The fix behind Cut: Apply records a fact's sequence only once the fact is
// applied, so a cut taken meanwhile never claims it.
func TestCutNeverClaimsAnUnappliedFact(t *testing.T) {
	s := New()
	const n = 5000
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 1; i <= n; i++ {
			if err := s.Apply(PrefixRevokeSession+"c"+strconv.Itoa(i), "", []byte(`{"exp":0}`), uint64(i), liveNow); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	for cuts := 0; s.LastSeq() < n && cuts < 20000; cuts++ {
		c := s.Cut()
		if got := len(c.sessions) / SessionRecordSize; uint64(got) < c.Seq {
			t.Fatalf("cut at sequence %d holds %d facts", c.Seq, got)
		}
	}
	wg.Wait()
}

func TestSessionValueFastPathAgreesWithJSON(t *testing.T) {
	for _, v := range []string{
		`{"exp":1700000000}`, `{"exp":0}`, `{"exp":01}`, `{"exp":-1}`, `{"exp":+1}`, `{"exp":1e9}`,
		`{"exp":1.5}`, `{"exp":99999999999999999999}`, `{"exp":1,"exp":2}`, `{"exp":1} `, ` {"exp":1}`,
		`{"exp":}`, `{"exp":"1"}`, `{"exp":4294967296}`, `{"exp":18446744073709551615}`, `{"exp":1}}`,
	} {
		t.Run(v, func(t *testing.T) { checkExpFastPath(t, []byte(v)) })
	}
}

// checkExpFastPath: Apply (whose fast path reads the daemon's exact form)
// accepts exactly what encoding/json accepts, with the same exp.
func checkExpFastPath(t *testing.T, v []byte) {
	s := New()
	err := s.Apply("revoke.session.x", "", v, 1, now)
	r, jerr := decodeSessionRevocation("revoke.session.x", v)
	if (err == nil) != (jerr == nil) {
		t.Fatalf("%q: Apply %v, encoding/json %v", v, err, jerr)
	}
	if err != nil {
		return
	}
	got, held := s.sessions[sidDigest("x")]
	if !held || got != exp32(r.Exp) {
		t.Fatalf("%q: held %v exp %d, encoding/json read %d", v, held, got, r.Exp)
	}
}

func FuzzSessionValueFastPath(f *testing.F) {
	f.Add([]byte(`{"exp":1700000000}`))
	f.Add([]byte(`{"exp":0}`))
	f.Add([]byte(`{"exp":007}`))
	f.Fuzz(func(t *testing.T, v []byte) { checkExpFastPath(t, v) })
}

// FuzzSnapshotPayload feeds arbitrary payloads (as if their signature had
// verified) to the chunk decoder and the loader's apply step: no panic, and
// whatever is accepted stays within the format.
func FuzzSnapshotPayload(f *testing.F) {
	src := anchored()
	for i := 1; i <= 30; i++ {
		_ = src.Apply(PrefixRevokeSession+"f"+strconv.Itoa(i), "", []byte(`{"exp":0}`), uint64(i), liveNow)
	}
	_ = src.Apply(PrefixRevokeUser+"u", "", []byte(`{"before":5,"exp":0}`), 31, liveNow)
	values, _, _ := src.Cut().Sign("fuzz", liveNow.UnixMilli(), anchor)
	for _, v := range values {
		payload, err := token.VerifyFact(v, anchored().anchors)
		if err == nil {
			f.Add("snapshot.0", payload)
		}
	}
	f.Add("snapshot.0", []byte(`{"key":"snapshot.0","iat":1,"gen":"g","seq":1,"n":1,"i":0,"sessions":"AAAAAAAAAAAAAAAAAAAAAAAAAAA="}`))
	f.Add("snapshot.1", []byte(`{"key":"snapshot.1","iat":1,"gen":"g","seq":1,"n":2,"i":1,"users":[{"k":"u","b":1,"e":0}],"facts":[{"k":"keys","v":"x.y.z"}]}`))
	f.Fuzz(func(t *testing.T, key string, payload []byte) {
		var p snapshotPayload
		if err := decodeSnapshotPayload(key, payload, &p); err != nil {
			return
		}
		if p.Key != key || len(p.Sessions)%SessionRecordSize != 0 || p.I < 0 || p.I >= p.N || p.N > MaxSnapshotChunks {
			t.Fatalf("accepted an out-of-format chunk: %+v", p)
		}
		s := anchored()
		s.applySnapshot(&p)
		if st := s.Stats(); st.Sessions > len(p.Sessions)/SessionRecordSize || st.Users > len(p.Users) {
			t.Fatalf("applied more than the chunk holds: %+v", st)
		}
		if _, err := json.Marshal(p); err != nil {
			t.Fatal(err)
		}
	})
}

// Snapshot keys are skipped by Apply: neither applied nor refused, in any
// operation (the daemon's watcher and the edge after its first sync see
// the chunks and the purges of stale ones).
func TestSnapshotEntriesSkippedNotRejected(t *testing.T) {
	s := anchored()
	values, _ := signCut(t, populated(t, 3), "g")
	for _, op := range []string{"", "PURGE", "DEL"} {
		if err := s.Apply("snapshot.0", op, values[0], 7, now); err != nil {
			t.Fatalf("%q: %v", op, err)
		}
	}
	if err := s.Apply("snapshot.junk", "", []byte("junk"), 8, now); err != nil {
		t.Fatal(err)
	}
	st := s.Stats()
	if st.Applied != 0 || st.Rejected != 0 || st.Sessions != 0 || st.LastSeq != 8 || s.Version() != 0 {
		t.Fatalf("stats %+v version %d", st, s.Version())
	}
}

// BenchmarkLiveHeapPerRevocation reports the heap a session revocation costs
// in the compact map (target: at most 50 bytes).
func BenchmarkLiveHeapPerRevocation(b *testing.B) {
	const n = 1000000
	for i := 0; i < b.N; i++ {
		before := heapInUse()
		s := New()
		v := []byte(fmt.Sprintf(`{"exp":%d}`, liveExp()))
		for j := 0; j < n; j++ {
			_ = s.Apply(PrefixRevokeSession+"sid-"+strconv.Itoa(j)+"-0123456789abcdefghij", "", v, uint64(j+1), liveNow)
		}
		after := heapInUse()
		b.ReportMetric(float64(after-before)/n, "B/revocation")
		if s.Stats().Sessions != n {
			b.Fatal("lost revocations")
		}
	}
}

func heapInUse() int64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}

// Attack: genuine chunks saved by a bucket writer and put back later, or
// into a bucket created again (whose sequences restarted), are refused.
func TestCopiedSnapshotChunkRefused(t *testing.T) {
	values, seq := signCut(t, populated(t, 10), "g")
	signed := liveNow
	tests := []struct {
		name   string
		seq    uint64
		stored time.Time
		ok     bool
	}{
		{"as written: after its cut, stored when signed", seq + 1, signed.Add(time.Second), true},
		{"stored a while later", seq + 1, signed.Add(MaxSnapshotCopyDelay - time.Minute), true},
		{"the daemon's clock ahead of the server's", seq + 1, signed.Add(-time.Hour), true},
		{"at or before its own cut", seq, signed, false},
		{"into a shorter stream", 3, signed, false},
		{"copied back hours later", seq + 1, signed.Add(3 * time.Hour), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := anchored().NewSnapshotLoader()
			err := l.Add("snapshot.0", "", values[0], tt.seq, tt.stored)
			if (err == nil) != tt.ok {
				t.Fatalf("Add = %v, want ok %v", err, tt.ok)
			}
			if err != nil && (!errors.Is(err, ErrSnapshot) || l.Chunks != 0) {
				t.Fatalf("refusal %v applied %d chunks", err, l.Chunks)
			}
		})
	}
}
