// Package edgestate holds the facts the edge applies on top of signed tokens —
// session and user revocations, group overrides and verification keys — fed by
// entries of the edge KV bucket. Reads are cheap (one read lock, map lookups) and
// Version tells a cache when its decisions may be out of date.
//
// Trust (docs/architecture.md, I10): whoever can write the edge bucket must
// not be able to widen access. The facts that could (the verification keys,
// group overrides) are accepted only when signed by a configured trust anchor
// (token.VerifyFact), bound to their own key and never older than the fact
// held; the facts that narrow access (revocations) only ever grow: a later
// put cannot shorten them and a delete or purge is ignored.
package edgestate

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edgepass/edgepass/plugin/idptoken"
	"github.com/edgepass/edgepass/plugin/token"
)

// Limits on one KV entry; larger input is refused (and counted) without parsing.
const (
	MaxKeyLength = 512
	MaxValueSize = token.MaxFactSize // the bucket's value limit
)

// PruneGrace keeps a fact this long past its exp before it stops applying, so a
// token accepted within the verifier's clock skew after exp is still refused.
const PruneGrace = 5 * time.Minute

// Key names and prefixes of the edge bucket.
const (
	KeyKeys             = "keys"
	PrefixRevokeSession = "revoke.session."
	PrefixRevokeUser    = "revoke.user."
	PrefixGroups        = "groups."
	// PrefixSnapshot: snapshot.<i>, the chunks of the daemon's signed
	// snapshot (snapshot.go). Apply skips them: only a first sync reads
	// them, through a SnapshotLoader.
	PrefixSnapshot = "snapshot."
)

// Errors Apply wraps, so a watcher can count or log by kind.
var (
	ErrUnknownKey     = errors.New("edgestate: unknown key")
	ErrMalformedValue = errors.New("edgestate: malformed value")
	ErrTooLarge       = errors.New("edgestate: entry too large")
	ErrUnknownOp      = errors.New("edgestate: unknown operation")
	// ErrUnsigned: a keys or groups fact without a valid trust-anchor
	// signature bound to its key (forged, or no trustAnchors configured).
	ErrUnsigned = errors.New("edgestate: fact not signed by a trust anchor")
	// ErrRollback: a signed fact older than the one held (a replay).
	ErrRollback = errors.New("edgestate: signed fact older than the one held")
	// ErrImmutable: a delete or purge of a fact that can only grow or be
	// replaced by a signed fact (revocations, keys, groups).
	ErrImmutable = errors.New("edgestate: fact cannot be deleted")
)

// SessionRevocation is the value of revoke.session.<sid>: tokens with that
// sid are refused until Exp (unix seconds; 0 = for as long as the fact lives).
type SessionRevocation struct {
	Exp int64 `json:"exp"`
}

// UserRevocation is the value of revoke.user.<subject-key>: the user's tokens
// issued at or before Before are refused until Exp.
type UserRevocation struct {
	Before int64 `json:"before"`
	Exp    int64 `json:"exp"`
}

// Merge is the session revocation covering both r and o, as every edge
// merges a put onto the one it holds: a revocation only grows.
func (r SessionRevocation) Merge(o SessionRevocation) SessionRevocation {
	return SessionRevocation{Exp: laterExp(r.Exp, o.Exp)}
}

// Merge is the user revocation covering both r and o (the later before,
// the later exp), as every edge merges a put onto the one it holds.
func (r UserRevocation) Merge(o UserRevocation) UserRevocation {
	m := UserRevocation{Before: r.Before, Exp: laterExp(r.Exp, o.Exp)}
	if o.Before > m.Before {
		m.Before = o.Before
	}
	return m
}

// GroupsFact is the signed payload of groups.<subject-key>: tokens of the
// user issued at or before At get Groups instead of their own, until Exp;
// Clear removes the override instead.
type GroupsFact struct {
	// Key is the fact's own key: a signature for one user cannot be copied
	// onto another's.
	Key string `json:"key"`
	// Iat is when the daemon signed it (unix milliseconds): an older fact
	// than the one held is a replay and is ignored.
	Iat    int64    `json:"iat"`
	Groups []string `json:"groups"`
	Clear  bool     `json:"clear,omitempty"`
	At     int64    `json:"at"`
	Exp    int64    `json:"exp"`
	// Admin marks an administrator's override (read by the daemon; edges
	// apply both kinds alike).
	Admin bool `json:"admin,omitempty"`
}

// KeysFact is the signed payload of keys: the verification keys, the key ids
// revoked (never trusted again by this process, whatever a later fact says)
// and the longest token lifetime the daemon issues.
type KeysFact struct {
	Key string `json:"key"` // always KeyKeys
	Iat int64  `json:"iat"` // unix milliseconds
	// JWKS is the verification key set (token.ParseJWKS form).
	JWKS json.RawMessage `json:"jwks"`
	// Revoked lists key ids that must never verify a token again.
	Revoked []string `json:"revoked,omitempty"`
	// MaxTokenLifetime (seconds) bounds exp - iat of any token the edge
	// accepts: a token minted with a leaked key for a long life is refused.
	MaxTokenLifetime int64 `json:"maxTokenLifetime"`
	// Mint is the daemon's assertion mint key: edges seal their requests
	// for identity assertions to it (package mint). Absent from an older
	// daemon; edges then cannot serve assertionHeader routes.
	Mint *MintKey `json:"mint,omitempty"`
	// IdP is the identity provider's signing keys and claim mapping, so
	// edges can verify IdP-issued JWT access tokens (middleware setting
	// bearer). Absent until the daemon fetched them.
	IdP *IdPKeys `json:"idp,omitempty"`
}

// IdPKeys is what an edge needs to accept the IdP's JWT access tokens the
// way the daemon accepts its logins.
type IdPKeys struct {
	// Issuer is the IdP's issuer (iss of its tokens).
	Issuer string `json:"issuer"`
	// JWKS is the IdP's key set as its jwks_uri serves it (RSA, EC, OKP).
	JWKS json.RawMessage `json:"jwks"`
	// GroupsClaim and UserClaims are the daemon's oidc.groupsClaim and
	// oidc.userClaims, compiled; GroupsInclude is oidc.groupsInclude
	// (names, or prefixes ending in *).
	GroupsClaim   []idptoken.ClaimPath `json:"groupsClaim,omitempty"`
	UserClaims    []idptoken.ClaimPath `json:"userClaims,omitempty"`
	GroupsInclude []string             `json:"groupsInclude,omitempty"`
}

// MintKey is the public half of the daemon's mint key (X25519).
type MintKey struct {
	Kid string `json:"kid"`
	Key string `json:"key"` // base64url, 32 bytes
}

// maxGroupsRollbackWindow is how long a cleared group override is
// remembered against replays of older overrides: longer than any fact lives.
const maxGroupsRollbackWindow = 30 * 24 * time.Hour

// maxRevokedKids bounds the process-wide list of revoked key ids.
const maxRevokedKids = 4096

// Stats are the counts a heartbeat or status page reports.
type Stats struct {
	Sessions int    // revoked sessions held
	Users    int    // revoked users held
	Groups   int    // group overrides held
	Keys     int    // verification keys received over NATS (0 = none yet)
	Applied  uint64 // entries applied
	Rejected uint64 // entries ignored: unknown key, malformed value, too large
	LastSeq  uint64
}

// sidDigest is the key of a session revocation in memory and in snapshots:
// the first 16 bytes of SHA-256(sid). A 1,000,000-revocation edge keeps 20
// bytes a revocation in its map instead of a string key; a collision (about
// 2^-64 for a million revocations) could only refuse a session, never admit
// one.
func sidDigest(sid string) [16]byte {
	sum := sha256.Sum256([]byte(sid))
	var d [16]byte
	copy(d[:], sum[:16])
	return d
}

// exp32 is a session revocation's exp as stored: unix seconds in a uint32
// (until 2106; later times are clamped, which only lengthens a revocation),
// 0 = for as long as the fact lives.
func exp32(exp int64) uint32 {
	if exp <= 0 {
		return 0
	}
	if exp > 0xFFFFFFFF {
		return 0xFFFFFFFF
	}
	return uint32(exp)
}

// signedFact is the value of an accepted signed fact (keys, groups,
// including cleared overrides) and the stream sequence it came at: a
// snapshot carries signed facts verbatim, so every edge checks their
// signatures itself.
type signedFact struct {
	raw string
	seq uint64
}

type groupFact struct {
	groups  []string
	at, exp int64
	iat     int64 // signing time (ms) of the fact, for rollback refusal
}

// State is the in-memory edge state; the zero value is not usable, call New.
type State struct {
	mu sync.RWMutex
	// sessions: sidDigest(sid) -> exp32(exp). Revoked sessions are the
	// bulk of the state (one per logout); users and groups are few.
	sessions map[[16]byte]uint32
	users    map[string]UserRevocation
	groups   map[string]groupFact
	signed   map[string]signedFact // KV key -> the signed fact held (keys, groups)
	keys     *token.KeySet
	// Signed facts: the anchors that verify them, the held keys fact's
	// signing time, revoked key ids and the token lifetime bound.
	anchors     *token.KeySet
	keysIat     int64
	revokedKids map[string]bool
	maxLifetime atomic.Int64 // seconds; 0 = no keys fact yet (no bound)
	// groupsCleared remembers the signing time of cleared overrides, so an
	// older override replayed after a clear is refused too.
	groupsCleared map[string]int64
	// mint is the daemon's mint key (*mintKey), from the keys fact.
	mint atomic.Value
	// idp is the IdP's keys and claim mapping (*IdPKeys), from the keys fact.
	idp atomic.Value

	version   atomic.Int64
	changeMu  sync.Mutex
	onChange  []func(Change)
	lastSeq   atomic.Int64
	lastHeard atomic.Int64 // unix nanoseconds, 0 = never
	synced    atomic.Int32
	// syncLostHeard is lastHeard when sync was last lost (0: never synced).
	syncLostHeard atomic.Int64
	applied       atomic.Int64
	rejected      atomic.Int64
	// refusals counts requests the edge refused, by reason code (CountRefusal).
	refusalsMu sync.Mutex
	refusals   map[string]uint64
}

// New returns an empty state without trust anchors: it refuses every keys
// and groups fact (the edge then verifies with its inline JWKS only).
func New() *State {
	return NewWithAnchors(nil)
}

// NewWithAnchors returns an empty state that accepts keys and groups facts
// signed by one of anchors (token.ParseAnchors).
func NewWithAnchors(anchors *token.KeySet) *State {
	return &State{
		sessions:      make(map[[16]byte]uint32),
		users:         make(map[string]UserRevocation),
		groups:        make(map[string]groupFact),
		signed:        make(map[string]signedFact),
		anchors:       anchors,
		revokedKids:   make(map[string]bool),
		groupsCleared: make(map[string]int64),
	}
}

// Apply applies one KV entry: op "" (or "PUT") stores the fact, "DEL" and "PURGE"
// would remove it but are refused for every kind (see the package comment).
// Unknown keys, unknown operations, unsigned or replayed signed facts and
// malformed or oversized values leave the state unchanged, are counted in
// Stats.Rejected and returned as an error for the caller to log; they are
// never fatal.
//
// Snapshot chunks (snapshot.<i>) are skipped: neither applied nor refused.
//
// The stream sequence is recorded after the fact is applied, so a Cut,
// which reads it under the state's lock, never claims a sequence whose fact
// it lacks.
func (s *State) Apply(key, op string, value []byte, seq uint64, now time.Time) error {
	s.lastHeard.Store(now.UnixNano())
	// Most of a replay is session revocations in the daemon's exact form
	// {"exp":N} (N a JSON integer: no sign, no leading zero): they are
	// applied here inline, without encoding/json and without a call per
	// step (under yaegi each call costs a frame). Anything else, including
	// every other form of the same value, takes the general path.
	p := len(PrefixRevokeSession)
	n := len(value)
	if op == "" && len(key) > p && len(key) <= MaxKeyLength && key[:p] == PrefixRevokeSession &&
		n >= 9 && n <= 27 && value[n-1] == '}' && string(value[:7]) == `{"exp":` &&
		value[7] >= '0' && value[7] <= '9' && (value[7] != '0' || n == 9) &&
		!strings.ContainsAny(key[p:], ".*> \t\r\n") {
		if exp, err := strconv.ParseInt(string(value[7:n-1]), 10, 64); err == nil {
			sum := sha256.Sum256([]byte(key[p:]))
			var d [16]byte
			copy(d[:], sum[:16])
			e := uint32(0xFFFFFFFF)
			if exp < 0xFFFFFFFF {
				e = uint32(exp)
			}
			s.mu.Lock()
			old, held := s.sessions[d]
			grows := !held || (old != 0 && (e == 0 || e > old))
			if grows {
				s.sessions[d] = e
			}
			s.mu.Unlock()
			if seq > 0 && int64(seq) > s.lastSeq.Load() {
				s.lastSeq.Store(int64(seq))
			}
			s.applied.Add(1)
			if grows {
				// changed(), inline.
				s.version.Add(1)
				s.changeMu.Lock()
				fs := s.onChange
				s.changeMu.Unlock()
				for i := 0; i < len(fs); i++ {
					fs[i](Change{SessionID: key[p:]})
				}
			}
			return nil
		}
	}
	if strings.HasPrefix(key, PrefixSnapshot) {
		s.storeSeq(seq)
		return nil
	}
	c, changed, err := s.apply(key, op, value, seq)
	s.storeSeq(seq)
	if err != nil {
		s.rejected.Add(1)
		return err
	}
	s.applied.Add(1)
	if changed {
		s.changed(c)
	}
	return nil
}

// storeSeq raises the last stream sequence seen to seq.
func (s *State) storeSeq(seq uint64) {
	if seq > 0 && int64(seq) > s.lastSeq.Load() {
		s.lastSeq.Store(int64(seq))
	}
}

// Change says which decisions a change can affect, so a cache drops those
// and keeps the rest: a revocation or group change for one user must not
// cost every other user their cached decision.
type Change struct {
	// All: every decision (the verification keys or the lifetime bound).
	All bool
	// SessionID: the decisions of tokens with this sid.
	SessionID string
	// SubjectKey: the decisions of this user's tokens (token.SubjectKey).
	SubjectKey string
}

// changed moves the version, then runs every OnChange function.
func (s *State) changed(c Change) {
	s.version.Add(1)
	s.changeMu.Lock()
	fs := s.onChange
	s.changeMu.Unlock()
	for i := 0; i < len(fs); i++ {
		fs[i](c)
	}
}

// OnChange adds f to the functions run after every change that can alter a
// decision, once the version has moved, in the goroutine that made the
// change (the NATS watcher's): the plugin's line index drops the affected
// decisions there (docs/architecture.md, I7). Functions add up; none
// replaces another.
func (s *State) OnChange(f func(Change)) {
	s.changeMu.Lock()
	next := make([]func(Change), 0, len(s.onChange)+1)
	next = append(next, s.onChange...)
	s.onChange = append(next, f)
	s.changeMu.Unlock()
}

// apply stores one fact; changed is false when the state did not move (a
// keys fact equal to the set held: the daemon republishes its JWKS
// periodically, which must not make every edge re-verify every token).
func (s *State) apply(key, op string, value []byte, seq uint64) (Change, bool, error) {
	if err := checkEntry(key, op, value); err != nil {
		return Change{}, false, err
	}
	if key == KeyKeys {
		changed, err := s.applyKeys(value, seq)
		return Change{All: true}, changed, err
	}
	kind, id := splitKey(key)
	switch kind {
	case PrefixRevokeSession:
		changed, err := s.applySessionRevocation(key, id, value)
		return Change{SessionID: id}, changed, err
	case PrefixRevokeUser:
		changed, err := s.applyUserRevocation(key, id, value)
		return Change{SubjectKey: id}, changed, err
	case PrefixGroups:
		changed, err := s.applyGroups(key, id, value, seq)
		return Change{SubjectKey: id}, changed, err
	}
	return Change{}, false, fmt.Errorf("%w: %q", ErrUnknownKey, key)
}

// checkEntry refuses an entry no fact kind takes: oversized, an unknown
// operation, or a delete or purge (every kind is immutable).
func checkEntry(key, op string, value []byte) error {
	if len(key) > MaxKeyLength {
		return fmt.Errorf("%w: key of %d bytes, limit %d", ErrTooLarge, len(key), MaxKeyLength)
	}
	if len(value) > MaxValueSize {
		return fmt.Errorf("%w: %s: value of %d bytes, limit %d", ErrTooLarge, key, len(value), MaxValueSize)
	}
	switch op {
	case "", "PUT":
		return nil
	case "DEL", "PURGE":
		if key == KeyKeys {
			return fmt.Errorf("%w: %s of keys (the last signed key set stays)", ErrImmutable, op)
		}
		if kind, _ := splitKey(key); kind == "" {
			return fmt.Errorf("%w: %q", ErrUnknownKey, key)
		}
		return fmt.Errorf("%w: %s of %s (revocations only expire; a group override is cleared by a signed fact)", ErrImmutable, op, key)
	}
	return fmt.Errorf("%w: %q on %s", ErrUnknownOp, op, key)
}

// applySessionRevocation merges revoke.session.<id> in any form the JSON
// allows (Apply reads the daemon's exact form itself).
func (s *State) applySessionRevocation(key, id string, value []byte) (bool, error) {
	v, err := decodeSessionRevocation(key, value)
	if err != nil {
		return false, err
	}
	return s.revokeSession(sidDigest(id), exp32(v.Exp)), nil
}

// applyUserRevocation merges revoke.user.<id> onto the one held.
func (s *State) applyUserRevocation(key, id string, value []byte) (bool, error) {
	v, err := decodeUserRevocation(key, value)
	if err != nil {
		return false, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, held := s.users[id]; held {
		v = v.Merge(old)
		if v == old {
			return false, nil
		}
	}
	s.users[id] = v
	return true, nil
}

// decodeSessionRevocation decodes a session revocation with encoding/json.
func decodeSessionRevocation(key string, value []byte) (SessionRevocation, error) {
	var v SessionRevocation
	err := decodeRevocation(key, value, &v, &v.Exp)
	return v, err
}

// decodeUserRevocation decodes a user revocation with encoding/json.
func decodeUserRevocation(key string, value []byte) (UserRevocation, error) {
	var v UserRevocation
	err := decodeRevocation(key, value, &v, &v.Exp)
	if err == nil && v.Before <= 0 {
		err = fmt.Errorf("%w: %s: want a positive \"before\"", ErrMalformedValue, key)
	}
	return v, err
}

// decodeRevocation decodes one JSON object into dst, whose exp (*exp, once
// decoded) must not be negative.
func decodeRevocation(key string, value []byte, dst any, exp *int64) error {
	if err := checkJSONObject(value); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrMalformedValue, key, err)
	}
	if err := json.Unmarshal(value, dst); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrMalformedValue, key, err)
	}
	if *exp < 0 {
		return fmt.Errorf("%w: %s: negative exp", ErrMalformedValue, key)
	}
	return nil
}

// revokeSession merges a session revocation; false if the one held already
// covers it.
func (s *State) revokeSession(d [16]byte, exp uint32) bool {
	s.mu.Lock()
	old, held := s.sessions[d]
	if held && (old == 0 || (exp != 0 && exp <= old)) {
		s.mu.Unlock()
		return false
	}
	s.sessions[d] = exp
	s.mu.Unlock()
	return true
}

// laterExp merges revocation expiries so a revocation only ever grows:
// 0 means "as long as the fact lives" and beats any time.
func laterExp(a, b int64) int64 {
	if a == 0 || b == 0 {
		return 0
	}
	if b > a {
		return b
	}
	return a
}

// OpenSigned checks a signed fact (keys, groups) as every edge does — a
// signature by one of anchors over a payload naming key — and decodes the
// payload into dst (a KeysFact or GroupsFact).
func OpenSigned(key string, value []byte, anchors *token.KeySet, dst any) error {
	if anchors == nil {
		return fmt.Errorf("%w: %s: no trust anchor configured (set trustAnchors to the daemon's anchor)", ErrUnsigned, key)
	}
	payload, err := token.VerifyFact(bytes.TrimSpace(value), anchors)
	if err != nil {
		return fmt.Errorf("%w: %s: %v", ErrUnsigned, key, err)
	}
	if err := json.Unmarshal(payload, dst); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrMalformedValue, key, err)
	}
	var named struct {
		Key string `json:"key"`
	}
	if err := json.Unmarshal(payload, &named); err != nil || named.Key != key {
		return fmt.Errorf("%w: %s: signed for key %q", ErrUnsigned, key, named.Key)
	}
	return nil
}

func (s *State) applyKeys(value []byte, seq uint64) (bool, error) {
	var f KeysFact
	if err := OpenSigned(KeyKeys, value, s.anchors, &f); err != nil {
		return false, err
	}
	if f.Iat <= 0 || f.MaxTokenLifetime <= 0 {
		return false, fmt.Errorf("%w: keys: want positive iat and maxTokenLifetime", ErrMalformedValue)
	}
	ks, err := token.ParseJWKS(f.JWKS)
	if err != nil {
		return false, fmt.Errorf("%w: keys: %v", ErrMalformedValue, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if f.Iat < s.keysIat {
		return false, fmt.Errorf("%w: keys signed at %d, holding %d", ErrRollback, f.Iat, s.keysIat)
	}
	for _, kid := range f.Revoked {
		if len(s.revokedKids) < maxRevokedKids {
			s.revokedKids[kid] = true
		}
	}
	if len(s.revokedKids) > 0 {
		var kept []token.Key
		for _, k := range ks.Keys() {
			if !s.revokedKids[k.ID] {
				kept = append(kept, k)
			}
		}
		ks = token.NewKeySet(kept...)
	}
	s.keysIat = f.Iat
	s.signed[KeyKeys] = signedFact{raw: string(bytes.TrimSpace(value)), seq: seq}
	// The mint key changes no decision: it only says where to seal
	// assertion requests.
	if f.Mint != nil {
		if pub, err := base64.RawURLEncoding.DecodeString(f.Mint.Key); err == nil && len(pub) == 32 && f.Mint.Kid != "" {
			s.mint.Store(&mintKey{kid: f.Mint.Kid, pub: pub})
		}
	}
	// The IdP's keys decide IdP access tokens: a change is a change.
	idpChanged := false
	if f.IdP != nil {
		old, _ := s.idp.Load().(*IdPKeys)
		if old == nil || !sameIdP(old, f.IdP) {
			s.idp.Store(f.IdP)
			idpChanged = true
		}
	}
	lifetimeChanged := s.maxLifetime.Swap(f.MaxTokenLifetime) != f.MaxTokenLifetime
	if ks.Equal(s.keys) && s.keys != nil && !lifetimeChanged && !idpChanged {
		return false, nil
	}
	s.keys = ks
	return true, nil
}

func (s *State) applyGroups(key, id string, value []byte, seq uint64) (bool, error) {
	var f GroupsFact
	if err := OpenSigned(key, value, s.anchors, &f); err != nil {
		return false, err
	}
	if f.Iat <= 0 || f.At <= 0 || f.Exp < 0 {
		return false, fmt.Errorf("%w: %s: want positive iat and at", ErrMalformedValue, key)
	}
	if !f.Clear && f.Groups == nil {
		return false, fmt.Errorf("%w: %s: missing \"groups\"", ErrMalformedValue, key)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	held := s.groupsCleared[id]
	if g, ok := s.groups[id]; ok && g.iat > held {
		held = g.iat
	}
	if f.Iat < held {
		return false, fmt.Errorf("%w: %s signed at %d, holding %d", ErrRollback, key, f.Iat, held)
	}
	s.signed[key] = signedFact{raw: string(bytes.TrimSpace(value)), seq: seq}
	if f.Clear {
		_, had := s.groups[id]
		delete(s.groups, id)
		s.groupsCleared[id] = f.Iat
		return had, nil
	}
	delete(s.groupsCleared, id)
	s.groups[id] = groupFact{groups: f.Groups, at: f.At, exp: f.Exp, iat: f.Iat}
	return true, nil
}

// splitKey returns the prefix and the id of a fact key, or "" for an unknown key.
// Ids are base64url (session ids, subject keys): non-empty, no dots or wildcards.
func splitKey(key string) (string, string) {
	var kind, id string
	switch {
	case strings.HasPrefix(key, PrefixRevokeSession):
		kind, id = PrefixRevokeSession, key[len(PrefixRevokeSession):]
	case strings.HasPrefix(key, PrefixRevokeUser):
		kind, id = PrefixRevokeUser, key[len(PrefixRevokeUser):]
	case strings.HasPrefix(key, PrefixGroups):
		kind, id = PrefixGroups, key[len(PrefixGroups):]
	default:
		return "", ""
	}
	if id == "" || strings.ContainsAny(id, ".*> \t\r\n") {
		return "", ""
	}
	return kind, id
}

// checkJSONObject refuses anything but one JSON object, so `null`, arrays and
// numbers are reported as malformed instead of decoding to an empty fact.
func checkJSONObject(value []byte) error {
	v := bytes.TrimSpace(value)
	if len(v) == 0 || v[0] != '{' {
		return errors.New("want a JSON object")
	}
	return nil
}

// VersionCounter is the state's version: it moves whenever anything that
// can change a decision changes, and a cache compares it with the version
// its decision was computed at. It is the counter itself because under
// Yaegi a compiled Load on it is far cheaper than an interpreted method call
// (docs/architecture.md, I7). Only the state adds to it.
func (s *State) VersionCounter() *atomic.Int64 {
	return &s.version
}

// live reports whether a fact with this exp still applies (exp 0 = until deleted).
func live(exp, now int64) bool {
	return exp == 0 || now <= exp+int64(PruneGrace/time.Second)
}

// Revoked reports whether a token (session sid, user subjectKey, issued at iat) is
// refused by a session revocation or a user revocation with iat <= before.
func (s *State) Revoked(sid, subjectKey string, iat int64, now time.Time) bool {
	return s.SessionRevoked(sid, now) || s.UserRevoked(subjectKey, iat, now)
}

// SessionRevoked reports a session revocation in force for sid.
func (s *State) SessionRevoked(sid string, now time.Time) bool {
	if sid == "" {
		return false
	}
	return s.sessionRevoked(sid, now.Unix())
}

func (s *State) sessionRevoked(sid string, now int64) bool {
	d := sidDigest(sid)
	s.mu.RLock()
	exp, ok := s.sessions[d]
	s.mu.RUnlock()
	return ok && live(int64(exp), now)
}

// UserRevoked reports a user revocation in force covering a token of the
// user issued at iat.
func (s *State) UserRevoked(subjectKey string, iat int64, now time.Time) bool {
	if subjectKey == "" {
		return false
	}
	s.mu.RLock()
	u, ok := s.users[subjectKey]
	s.mu.RUnlock()
	return ok && iat <= u.Before && live(u.Exp, now.Unix())
}

// GroupsOverride returns the groups that replace a token's own when the override
// is at least as new as the token (iat <= at). The slice is shared: do not modify.
func (s *State) GroupsOverride(subjectKey string, iat int64) ([]string, bool) {
	s.mu.RLock()
	g, ok := s.groups[subjectKey]
	s.mu.RUnlock()
	if !ok || iat > g.at {
		return nil, false
	}
	return g.groups, true
}

// MaxTokenLifetime is the longest exp - iat the daemon issues (seconds), from
// the signed keys fact; 0 until one arrived (no bound).
func (s *State) MaxTokenLifetime() int64 {
	return s.maxLifetime.Load()
}

// TooLong reports a token whose lifetime exceeds the published maximum: a
// token minted with a leaked key for a long life.
func (s *State) TooLong(iat, exp int64) bool {
	max := s.maxLifetime.Load()
	return max > 0 && exp-iat > max
}

// KeyRevoked reports a key id a signed keys fact revoked.
func (s *State) KeyRevoked(kid string) bool {
	s.mu.RLock()
	r := s.revokedKids[kid]
	s.mu.RUnlock()
	return r
}

type mintKey struct {
	kid string
	pub []byte
}

// MintKey returns the daemon's assertion mint key from the signed keys
// fact (kid "" until one arrived).
func (s *State) MintKey() (string, []byte) {
	m, _ := s.mint.Load().(*mintKey)
	if m == nil {
		return "", nil
	}
	return m.kid, m.pub
}

// IdP returns the IdP's keys and claim mapping from the signed keys fact
// (nil until one carried them). Do not modify.
func (s *State) IdP() *IdPKeys {
	f, _ := s.idp.Load().(*IdPKeys)
	return f
}

func sameIdP(a, b *IdPKeys) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return bytes.Equal(ja, jb)
}

// Keys returns the verification keys received over NATS, nil until a `keys` entry
// arrived (callers then fall back to their inline JWKS).
func (s *State) Keys() *token.KeySet {
	s.mu.RLock()
	ks := s.keys
	s.mu.RUnlock()
	return ks
}

// LastSeq is the highest stream sequence applied, where a watcher resumes from.
func (s *State) LastSeq() uint64 {
	return uint64(s.lastSeq.Load())
}

// Touch records that NATS was heard from (a message or a heartbeat).
func (s *State) Touch(now time.Time) {
	s.lastHeard.Store(now.UnixNano())
}

// LastHeard is when NATS was last heard from; zero if never.
func (s *State) LastHeard() time.Time {
	n := s.lastHeard.Load()
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}

// SetSynced records whether the watcher has replayed the bucket up to date.
// Losing sync (a reconnect, a resync) freezes CurrentAsOfUnix at the last time
// NATS was heard from while synced.
func (s *State) SetSynced(v bool) {
	if v {
		s.synced.Store(1)
		return
	}
	if s.synced.Swap(0) == 1 {
		s.syncLostHeard.Store(s.lastHeard.Load())
	}
}

// CurrentAsOfUnix is when the state was last known complete, in unix seconds:
// while synced, the last time NATS was heard from; while replaying (at start,
// after a reconnect or a resync), the last time it was heard from while synced
// (0 before the first sync). Replayed messages make LastHeard recent long
// before the revocations missed meanwhile are applied; this does not move
// until the replay has caught up.
func (s *State) CurrentAsOfUnix() int64 {
	if s.synced.Load() == 1 {
		return s.lastHeard.Load() / int64(time.Second)
	}
	return s.syncLostHeard.Load() / int64(time.Second)
}

// Synced reports whether the watcher has caught up with the bucket.
func (s *State) Synced() bool {
	return s.synced.Load() == 1
}

// Prune drops facts past their exp (plus PruneGrace) and returns how many.
// It changes no decision — every token a dropped fact covered has expired
// too — so it neither moves the version nor runs OnChange.
func (s *State) Prune(now time.Time) int {
	n := now.Unix()
	dropped := 0
	s.mu.Lock()
	grace := int64(PruneGrace / time.Second)
	for d, exp := range s.sessions {
		if exp != 0 && n > int64(exp)+grace {
			delete(s.sessions, d)
			dropped++
		}
	}
	for id, f := range s.users {
		if !live(f.Exp, n) {
			delete(s.users, id)
			dropped++
		}
	}
	for id, f := range s.groups {
		if !live(f.exp, n) {
			delete(s.groups, id)
			delete(s.signed, PrefixGroups+id)
			dropped++
		}
	}
	for id, iat := range s.groupsCleared {
		// A cleared override's replay is harmless once any override it
		// could bring back would have expired too.
		if n > iat/1000+int64(maxGroupsRollbackWindow/time.Second) {
			delete(s.groupsCleared, id)
			delete(s.signed, PrefixGroups+id)
		}
	}
	s.mu.Unlock()
	return dropped
}

// maxRefusalReasons bounds the distinct reason codes counted.
const maxRefusalReasons = 32

// CountRefusal counts a request the edge refused for reason (a policy reason
// code), for the edge's heartbeat and the daemon's metrics.
func (s *State) CountRefusal(reason string) {
	s.refusalsMu.Lock()
	if s.refusals == nil {
		s.refusals = map[string]uint64{}
	}
	if _, ok := s.refusals[reason]; ok || len(s.refusals) < maxRefusalReasons {
		s.refusals[reason]++
	}
	s.refusalsMu.Unlock()
}

// Refusals returns a copy of the refusal counts by reason.
func (s *State) Refusals() map[string]uint64 {
	s.refusalsMu.Lock()
	out := make(map[string]uint64, len(s.refusals))
	for k, v := range s.refusals {
		out[k] = v
	}
	s.refusalsMu.Unlock()
	return out
}

// Stats returns the current counts.
func (s *State) Stats() Stats {
	s.mu.RLock()
	st := Stats{Sessions: len(s.sessions), Users: len(s.users), Groups: len(s.groups), Keys: s.keys.Len()}
	s.mu.RUnlock()
	st.Applied = uint64(s.applied.Load())
	st.Rejected = uint64(s.rejected.Load())
	st.LastSeq = s.LastSeq()
	return st
}

// SignKeys is the value of the keys fact: f, named KeyKeys, signed with a
// trust-anchor key. The daemon publishes it; tests forge with it.
func SignKeys(f KeysFact, anchor ed25519.PrivateKey) ([]byte, error) {
	f.Key = KeyKeys
	return signFact(f, anchor)
}

// SignGroups is the value of groups.<subjectKey>: f, named after that key,
// signed with a trust-anchor key.
func SignGroups(subjectKey string, f GroupsFact, anchor ed25519.PrivateKey) ([]byte, error) {
	f.Key = PrefixGroups + subjectKey
	return signFact(f, anchor)
}

func signFact(v any, anchor ed25519.PrivateKey) ([]byte, error) {
	payload, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("edgestate: encode fact: %w", err)
	}
	raw, err := token.SignFact(payload, anchor)
	if err != nil {
		return nil, err
	}
	return []byte(raw), nil
}
