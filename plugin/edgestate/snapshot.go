package edgestate

// Snapshots: the daemon keeps a signed copy of its edge state in the edge
// bucket itself, under snapshot.0 … snapshot.<n-1>, so that an edge starting
// against a large bucket reads a few large messages instead of one message
// per fact (docs/contracts.md, "Edge state", "Snapshots").
//
// Each chunk is a signed fact (token.SignFact, trust anchor) bound to its
// key, whose payload carries the generation it belongs to (gen, random), the
// stream sequence seq its generation is consistent with (every fact of a
// sequence up to seq still live is in the generation), the chunk count n, its
// index i and part of the facts:
//
//	{"key":"snapshot.<i>","iat":ms,"gen":"<hex>","seq":S,"n":N,"i":I,
//	 "sessions":"<base64: 20-byte records>",
//	 "users":[{"k":"<subject-key>","b":before,"e":exp},…],
//	 "facts":[{"k":"<key>","v":"<signed fact, verbatim>"},…]}
//
// A session record is the first 16 bytes of SHA-256(sid) then exp as a
// big-endian uint32 (0 = for as long as the fact lives): what the state
// itself keeps, so the daemon's compact state produces it and an edge loads
// it without parsing text in interpreted code (encoding/json decodes the
// base64 natively). Keys and groups facts (overrides and clears) travel as
// their own JWS, which every edge verifies against its own trust anchors.

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/edgepass/edgepass/plugin/token"
)

const (
	// SessionRecordSize is the size of one session revocation in a
	// snapshot: sidDigest(sid), then exp as a big-endian uint32.
	SessionRecordSize = 20
	// MaxSnapshotChunks bounds a generation's chunk count (n): 10 million
	// revocations take about 6,000.
	MaxSnapshotChunks = 1 << 16
	// snapshotPayloadBudget bounds a chunk's JSON payload, so the signed
	// value (base64url of it, a header and a signature) stays near 60 KiB,
	// well under MaxValueSize.
	snapshotPayloadBudget = 45000
	// snapshotFixedCost is more than the payload's members besides the
	// facts: key, iat, gen, seq, n, i and the member names.
	snapshotFixedCost = 320
	// maxSnapshotGen bounds a generation id.
	maxSnapshotGen = 64
	// maxSnapshotGens bounds the generations a loader tracks at once.
	maxSnapshotGens = 16
	// MaxSnapshotCopyDelay: a chunk stored in the stream longer than this
	// after it was signed was not written by the daemon's writer (which
	// stores each chunk as it signs it) but copied back later: refused.
	MaxSnapshotCopyDelay = time.Hour
)

// ErrSnapshot wraps why a snapshot chunk or cut cannot be used.
var ErrSnapshot = errors.New("edgestate: snapshot")

type snapshotUser struct {
	K string `json:"k"`
	B int64  `json:"b"`
	E int64  `json:"e"`
}

type snapshotFact struct {
	K string `json:"k"`
	V string `json:"v"`
}

// snapshotPayload is the signed payload of one chunk.
type snapshotPayload struct {
	Key      string         `json:"key"`
	Iat      int64          `json:"iat"`
	Gen      string         `json:"gen"`
	Seq      uint64         `json:"seq"`
	N        int            `json:"n"`
	I        int            `json:"i"`
	Sessions []byte         `json:"sessions,omitempty"`
	Users    []snapshotUser `json:"users,omitempty"`
	Facts    []snapshotFact `json:"facts,omitempty"`
}

// SnapshotKey is the key of chunk i.
func SnapshotKey(i int) string {
	return PrefixSnapshot + strconv.Itoa(i)
}

// checkSnapshotPayload validates a decoded chunk read from key.
func checkSnapshotPayload(key string, p *snapshotPayload) error {
	if p.Key != key {
		return fmt.Errorf("%w: %s: signed for key %q", ErrUnsigned, key, p.Key)
	}
	if p.Gen == "" || len(p.Gen) > maxSnapshotGen {
		return fmt.Errorf("%w: %s: want a generation id of 1 to %d characters", ErrMalformedValue, key, maxSnapshotGen)
	}
	if p.Seq == 0 || p.Iat <= 0 {
		return fmt.Errorf("%w: %s: want a positive seq and iat", ErrMalformedValue, key)
	}
	if p.N < 1 || p.N > MaxSnapshotChunks || p.I < 0 || p.I >= p.N {
		return fmt.Errorf("%w: %s: chunk %d of %d", ErrMalformedValue, key, p.I, p.N)
	}
	if key != SnapshotKey(p.I) {
		return fmt.Errorf("%w: %s: chunk %d signed for another key", ErrUnsigned, key, p.I)
	}
	if len(p.Sessions)%SessionRecordSize != 0 {
		return fmt.Errorf("%w: %s: session records of %d bytes", ErrMalformedValue, key, len(p.Sessions))
	}
	for i := 0; i < len(p.Users); i++ {
		u := p.Users[i]
		if kind, _ := splitKey(PrefixRevokeUser + u.K); kind == "" || u.B <= 0 || u.E < 0 {
			return fmt.Errorf("%w: %s: bad user revocation", ErrMalformedValue, key)
		}
	}
	for i := 0; i < len(p.Facts); i++ {
		k := p.Facts[i].K
		if kind, _ := splitKey(k); k != KeyKeys && kind != PrefixGroups {
			return fmt.Errorf("%w: %s: fact %q is not a signed kind", ErrMalformedValue, key, clipKey(k))
		}
	}
	return nil
}

func clipKey(k string) string {
	if len(k) > 80 {
		return k[:80]
	}
	return k
}

// Cut is a consistent copy of a state for a snapshot: every fact the state
// holds from a stream sequence up to Seq is in it (it may hold later ones
// too: facts are idempotent, so an edge replaying from Seq+1 and meeting
// them again changes nothing).
type Cut struct {
	Seq      uint64
	sessions []byte // SessionRecordSize records
	users    []snapshotUser
	facts    []snapshotFact
	factSeqs []uint64
}

// Cut copies the state, read under its lock with the last stream sequence
// applied. Apply records a sequence only once its fact is applied, so the
// cut holds every fact up to Seq.
func (s *State) Cut() *Cut {
	s.mu.RLock()
	defer s.mu.RUnlock()
	c := &Cut{Seq: uint64(s.lastSeq.Load())}
	c.sessions = make([]byte, 0, SessionRecordSize*len(s.sessions))
	for d, exp := range s.sessions {
		dd := d
		c.sessions = append(c.sessions, dd[:]...)
		c.sessions = append(c.sessions, byte(exp>>24), byte(exp>>16), byte(exp>>8), byte(exp))
	}
	for id, u := range s.users {
		c.users = append(c.users, snapshotUser{K: id, B: u.Before, E: u.Exp})
	}
	keys := make([]string, 0, len(s.signed))
	for k := range s.signed {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for i := 0; i < len(keys); i++ {
		f := s.signed[keys[i]]
		c.facts = append(c.facts, snapshotFact{K: keys[i], V: f.raw})
		c.factSeqs = append(c.factSeqs, f.seq)
	}
	return c
}

// Facts is how many facts the cut holds.
func (c *Cut) Facts() int {
	return len(c.sessions)/SessionRecordSize + len(c.users) + len(c.facts)
}

// Sign encodes the cut as the chunks of generation gen, signed at iat (unix
// milliseconds) with a trust-anchor key: values[i] is the value of
// SnapshotKey(i). seq is the sequence the chunks claim: the cut's, or lower
// when a signed fact is too large to embed in a chunk (it is left out and
// the edges replay it from the stream). An error when nothing can be cut.
func (c *Cut) Sign(gen string, iat int64, anchor ed25519.PrivateKey) ([][]byte, uint64, error) {
	if gen == "" || len(gen) > maxSnapshotGen {
		return nil, 0, fmt.Errorf("%w: generation id of %d characters", ErrSnapshot, len(gen))
	}
	seq := c.Seq
	var chunks []*snapshotPayload
	cur := &snapshotPayload{}
	avail := snapshotPayloadBudget - snapshotFixedCost
	for i := 0; i < len(c.facts); i++ {
		b, err := json.Marshal(c.facts[i])
		if err != nil {
			return nil, 0, fmt.Errorf("%w: %v", ErrSnapshot, err)
		}
		cost := len(b) + 1
		if cost > snapshotPayloadBudget-snapshotFixedCost {
			// Too large to embed: claim a sequence before it, so the
			// edges replay it.
			if fs := c.factSeqs[i]; fs == 0 {
				seq = 0
			} else if fs-1 < seq {
				seq = fs - 1
			}
			continue
		}
		if cost > avail {
			chunks = append(chunks, cur)
			cur, avail = &snapshotPayload{}, snapshotPayloadBudget-snapshotFixedCost
		}
		cur.Facts = append(cur.Facts, c.facts[i])
		avail -= cost
	}
	for i := 0; i < len(c.users); i++ {
		b, err := json.Marshal(c.users[i])
		if err != nil {
			return nil, 0, fmt.Errorf("%w: %v", ErrSnapshot, err)
		}
		cost := len(b) + 1
		if cost > avail {
			chunks = append(chunks, cur)
			cur, avail = &snapshotPayload{}, snapshotPayloadBudget-snapshotFixedCost
		}
		cur.Users = append(cur.Users, c.users[i])
		avail -= cost
	}
	for off := 0; off < len(c.sessions); {
		// Base64 of k records takes 4*ceil(20k/3) bytes.
		fit := (avail/4*3 - 3) / SessionRecordSize
		if fit <= 0 {
			chunks = append(chunks, cur)
			cur, avail = &snapshotPayload{}, snapshotPayloadBudget-snapshotFixedCost
			continue
		}
		take := len(c.sessions) - off
		if take > fit*SessionRecordSize {
			take = fit * SessionRecordSize
		}
		cur.Sessions = c.sessions[off : off+take]
		off += take
		avail = 0
	}
	if len(cur.Sessions) > 0 || len(cur.Users) > 0 || len(cur.Facts) > 0 || len(chunks) == 0 {
		chunks = append(chunks, cur)
	}
	if seq == 0 {
		return nil, 0, fmt.Errorf("%w: nothing to cut (sequence 0)", ErrSnapshot)
	}
	if len(chunks) > MaxSnapshotChunks {
		return nil, 0, fmt.Errorf("%w: %d chunks, limit %d", ErrSnapshot, len(chunks), MaxSnapshotChunks)
	}
	values := make([][]byte, len(chunks))
	for i := 0; i < len(chunks); i++ {
		p := chunks[i]
		// One assignment per statement (docs/architecture.md, I1).
		p.Key = SnapshotKey(i)
		p.Iat = iat
		p.Gen = gen
		p.Seq = seq
		p.N = len(chunks)
		p.I = i
		v, err := signFact(p, anchor)
		if err != nil {
			return nil, 0, fmt.Errorf("%w: chunk %d: %v", ErrSnapshot, i, err)
		}
		if len(v) > MaxValueSize {
			return nil, 0, fmt.Errorf("%w: chunk %d is %d bytes, limit %d", ErrSnapshot, i, len(v), MaxValueSize)
		}
		values[i] = v
	}
	return values, seq, nil
}

// SnapshotInfo describes a verified chunk.
type SnapshotInfo struct {
	Gen string
	Seq uint64
	N   int
	I   int
	Iat int64 // unix milliseconds
	// Facts in this chunk.
	Facts int
}

// VerifySnapshotChunk checks a chunk read from key against anchors and
// describes it, without applying it (the daemon reads the head of the
// snapshot this way).
func VerifySnapshotChunk(key string, value []byte, anchors *token.KeySet) (SnapshotInfo, error) {
	var p snapshotPayload
	if err := verifySnapshot(key, value, anchors, &p); err != nil {
		return SnapshotInfo{}, err
	}
	return infoOf(&p), nil
}

func infoOf(p *snapshotPayload) SnapshotInfo {
	return SnapshotInfo{Gen: p.Gen, Seq: p.Seq, N: p.N, I: p.I, Iat: p.Iat, Facts: chunkFacts(p)}
}

// chunkFacts is how many facts the chunk p holds. A function, not a
// method: under Yaegi a method on snapshotPayload breaks decoding JSON into
// it (docs/architecture.md, I1).
func chunkFacts(p *snapshotPayload) int {
	return len(p.Sessions)/SessionRecordSize + len(p.Users) + len(p.Facts)
}

func verifySnapshot(key string, value []byte, anchors *token.KeySet, p *snapshotPayload) error {
	if len(value) > MaxValueSize {
		return fmt.Errorf("%w: %s: value of %d bytes, limit %d", ErrTooLarge, key, len(value), MaxValueSize)
	}
	if anchors == nil {
		return fmt.Errorf("%w: %s: no trust anchor configured", ErrUnsigned, key)
	}
	payload, err := token.VerifyFact(bytes.TrimSpace(value), anchors)
	if err != nil {
		return fmt.Errorf("%w: %s: %v", ErrUnsigned, key, err)
	}
	return decodeSnapshotPayload(key, payload, p)
}

// decodeSnapshotPayload decodes and checks a chunk's payload (after its
// signature was verified).
func decodeSnapshotPayload(key string, payload []byte, p *snapshotPayload) error {
	if err := json.Unmarshal(payload, p); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrMalformedValue, key, err)
	}
	return checkSnapshotPayload(key, p)
}

// snapshotGen is what a loader knows of one generation.
type snapshotGen struct {
	seq   uint64
	n     int
	iat   int64
	have  []bool
	count int
}

// SnapshotLoader collects the chunks an edge reads at its first sync and
// applies each verified chunk's facts as it arrives. Every chunk that
// verifies is genuine (signed by a trust anchor, bound to its key), and
// facts only merge (revocations grow, signed facts never go back), so
// applying any of them is safe; which sequence the edge may resume after is
// decided by Best alone: the highest of the generations whose n chunks all
// arrived. Chunks of different generations never make up a cut together.
// Not safe for concurrent use (the watcher's goroutine owns it).
type SnapshotLoader struct {
	s    *State
	gens map[string]*snapshotGen
	// Chunks and Facts count the chunks applied and the facts in them.
	Chunks int
	Facts  int
}

// NewSnapshotLoader returns a loader applying into s.
func (s *State) NewSnapshotLoader() *SnapshotLoader {
	return &SnapshotLoader{s: s, gens: make(map[string]*snapshotGen)}
}

// Add verifies one entry of the snapshot.> subjects and applies its facts.
// seq is the entry's stream sequence and stored when the server stored it
// (0 and the zero time when unknown). Deletes and purges (of chunk keys
// beyond a newer generation's n) are ignored; an entry that is not a genuine
// chunk, as written by the daemon into this stream, is refused with an error
// and changes nothing:
//   - not signed by a trust anchor for its own key, or out of format;
//   - claiming a cut at or after its own sequence: the daemon writes chunks
//     after the cut, so it was copied from another stream (a bucket deleted
//     and created again restarts its sequences);
//   - stored more than MaxSnapshotCopyDelay after it was signed: copied back.
func (l *SnapshotLoader) Add(key, op string, value []byte, seq uint64, stored time.Time) error {
	if op == "DEL" || op == "PURGE" {
		return nil
	}
	if op != "" && op != "PUT" {
		return fmt.Errorf("%w: %q on %s", ErrUnknownOp, op, clipKey(key))
	}
	var p snapshotPayload
	if err := verifySnapshot(key, value, l.s.anchors, &p); err != nil {
		return err
	}
	if seq > 0 && p.Seq >= seq {
		return fmt.Errorf("%w: %s at sequence %d claims a cut at %d: copied from another stream", ErrSnapshot, key, seq, p.Seq)
	}
	if !stored.IsZero() && stored.Sub(time.UnixMilli(p.Iat)) > MaxSnapshotCopyDelay {
		return fmt.Errorf("%w: %s stored %s after it was signed: copied back", ErrSnapshot, key, stored.Sub(time.UnixMilli(p.Iat)).Round(time.Second))
	}
	g := l.gens[p.Gen]
	if g == nil {
		if len(l.gens) >= maxSnapshotGens {
			return fmt.Errorf("%w: %s: more than %d generations", ErrSnapshot, key, maxSnapshotGens)
		}
		g = &snapshotGen{seq: p.Seq, n: p.N, iat: p.Iat, have: make([]bool, p.N)}
		l.gens[p.Gen] = g
	}
	if g.seq != p.Seq || g.n != p.N {
		return fmt.Errorf("%w: %s: generation %s says seq %d of %d chunks, chunk %d says %d of %d", ErrMalformedValue, key, clipKey(p.Gen), g.seq, g.n, p.I, p.Seq, p.N)
	}
	if g.have[p.I] {
		return nil
	}
	if l.s.applySnapshot(&p) {
		l.s.changed(Change{All: true})
	}
	g.have[p.I] = true
	g.count++
	l.Chunks++
	l.Facts += chunkFacts(&p)
	return nil
}

// Best returns the newest complete generation: the highest seq whose n
// chunks all arrived (the later signed, on a tie); ok false when none is.
func (l *SnapshotLoader) Best() (gen string, seq uint64, ok bool) {
	var bestIat int64
	for id, g := range l.gens {
		if g.count != g.n {
			continue
		}
		if !ok || g.seq > seq || (g.seq == seq && g.iat > bestIat) {
			gen, seq, bestIat, ok = id, g.seq, g.iat, true
		}
	}
	return gen, seq, ok
}

// Seen is how many generations the loader saw a chunk of.
func (l *SnapshotLoader) Seen() int {
	return len(l.gens)
}

// Adopt records that the edge resumes after seq, the sequence of a complete
// generation: LastSeq reports it from now on.
func (l *SnapshotLoader) Adopt(seq uint64, now time.Time) {
	l.s.storeSeq(seq)
	l.s.lastHeard.Store(now.UnixNano())
}

// applySnapshot merges a verified chunk's facts; true if anything changed.
func (s *State) applySnapshot(p *snapshotPayload) bool {
	changed := false
	b := p.Sessions
	grace := int64(PruneGrace / time.Second)
	now := time.Now().Unix()
	s.mu.Lock()
	for off := 0; off+SessionRecordSize <= len(b); off += SessionRecordSize {
		var d [16]byte
		copy(d[:], b[off:off+16])
		exp := uint32(b[off+16])<<24 | uint32(b[off+17])<<16 | uint32(b[off+18])<<8 | uint32(b[off+19])
		if exp != 0 && now > int64(exp)+grace {
			continue // expired since the cut
		}
		old, held := s.sessions[d]
		if held && (old == 0 || (exp != 0 && exp <= old)) {
			continue
		}
		s.sessions[d] = exp
		changed = true
	}
	for i := 0; i < len(p.Users); i++ {
		u := p.Users[i]
		f := UserRevocation{Before: u.B, Exp: u.E}
		if old, held := s.users[u.K]; held {
			f = f.Merge(old)
			if f == old {
				continue
			}
		}
		s.users[u.K] = f
		changed = true
	}
	s.mu.Unlock()
	for i := 0; i < len(p.Facts); i++ {
		// Verified on their own, as if read from the bucket; one refused
		// (older than the fact held) changes nothing.
		_, ch, err := s.apply(p.Facts[i].K, "", []byte(p.Facts[i].V), p.Seq)
		if err == nil && ch {
			changed = true
		}
	}
	return changed
}
