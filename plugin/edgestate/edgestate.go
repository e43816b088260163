// Package edgestate holds the facts the edge applies on top of signed tokens —
// session and user revocations, group overrides and verification keys — fed by
// entries of the edge KV bucket. Reads are cheap (one read lock, map lookups) and
// Version tells a cache when its decisions may be out of date.
package edgestate

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edgepass/edgepass/plugin/token"
)

// Limits on one KV entry; larger input is refused (and counted) without parsing.
const (
	MaxKeyLength = 512
	MaxValueSize = 64 << 10
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
)

// Errors Apply wraps, so a watcher can count or log by kind.
var (
	ErrUnknownKey     = errors.New("edgestate: unknown key")
	ErrMalformedValue = errors.New("edgestate: malformed value")
	ErrTooLarge       = errors.New("edgestate: entry too large")
	ErrUnknownOp      = errors.New("edgestate: unknown operation")
)

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

type userFact struct {
	before, exp int64
}

type groupFact struct {
	groups  []string
	at, exp int64
}

// State is the in-memory edge state; the zero value is not usable, call New.
type State struct {
	mu       sync.RWMutex
	sessions map[string]int64 // sid -> exp
	users    map[string]userFact
	groups   map[string]groupFact
	keys     *token.KeySet

	version   atomic.Int64
	changeMu  sync.Mutex
	onChange  func()
	lastSeq   atomic.Int64
	lastHeard atomic.Int64 // unix nanoseconds, 0 = never
	synced    atomic.Int32
	// syncLostHeard is lastHeard when sync was last lost (0: never synced).
	syncLostHeard atomic.Int64
	applied       atomic.Int64
	rejected      atomic.Int64
}

// New returns an empty state.
func New() *State {
	return &State{
		sessions: make(map[string]int64),
		users:    make(map[string]userFact),
		groups:   make(map[string]groupFact),
	}
}

// factValue is any fact's JSON value (contracts.md): every kind may carry
// exp; before, groups and at belong to one kind each and are checked there.
type factValue struct {
	Exp    int64     `json:"exp"`
	Before *int64    `json:"before"`
	Groups *[]string `json:"groups"`
	At     *int64    `json:"at"`
}

// Apply applies one KV entry: op "" (or "PUT") stores the fact, "DEL" and "PURGE"
// remove it. Unknown keys, unknown operations and malformed or oversized values
// leave the state unchanged, are counted in Stats.Rejected and returned as an
// error for the caller to log; they are never fatal.
func (s *State) Apply(key, op string, value []byte, seq uint64, now time.Time) error {
	s.Touch(now)
	if seq > 0 && int64(seq) > s.lastSeq.Load() {
		s.lastSeq.Store(int64(seq))
	}
	changed, err := s.apply(key, op, value)
	if err != nil {
		s.rejected.Add(1)
		return err
	}
	s.applied.Add(1)
	if changed {
		s.changed()
	}
	return nil
}

// changed moves the version, then runs the OnChange function.
func (s *State) changed() {
	s.version.Add(1)
	s.changeMu.Lock()
	f := s.onChange
	s.changeMu.Unlock()
	if f != nil {
		f()
	}
}

// OnChange sets f to run after every change that can alter a decision, once
// the version has moved, in the goroutine that made the change (the NATS
// watcher's): a cache whose readers cannot afford to compare versions drops
// its decisions there instead. One function per State; a later call replaces it.
func (s *State) OnChange(f func()) {
	s.changeMu.Lock()
	s.onChange = f
	s.changeMu.Unlock()
}

// apply stores or removes one fact; changed is false only for a keys entry
// equal to the set already held (the daemon republishes its JWKS
// periodically: that must not make every edge re-verify every token).
func (s *State) apply(key, op string, value []byte) (changed bool, err error) {
	if len(key) > MaxKeyLength {
		return false, fmt.Errorf("%w: key of %d bytes, limit %d", ErrTooLarge, len(key), MaxKeyLength)
	}
	if len(value) > MaxValueSize {
		return false, fmt.Errorf("%w: %s: value of %d bytes, limit %d", ErrTooLarge, key, len(value), MaxValueSize)
	}
	del := false
	switch op {
	case "", "PUT":
	case "DEL", "PURGE":
		del = true
	default:
		return false, fmt.Errorf("%w: %q on %s", ErrUnknownOp, op, key)
	}

	if key == KeyKeys {
		if del {
			s.mu.Lock()
			s.keys = nil
			s.mu.Unlock()
			return true, nil
		}
		ks, err := token.ParseJWKS(value)
		if err != nil {
			return false, fmt.Errorf("%w: keys: %v", ErrMalformedValue, err)
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		if ks.Equal(s.keys) {
			return false, nil
		}
		s.keys = ks
		return true, nil
	}

	kind, id := splitKey(key)
	if kind == "" {
		return false, fmt.Errorf("%w: %q", ErrUnknownKey, key)
	}
	if del {
		s.mu.Lock()
		switch kind {
		case PrefixRevokeSession:
			delete(s.sessions, id)
		case PrefixRevokeUser:
			delete(s.users, id)
		case PrefixGroups:
			delete(s.groups, id)
		}
		s.mu.Unlock()
		return true, nil
	}
	if err := checkJSONObject(value); err != nil {
		return false, fmt.Errorf("%w: %s: %v", ErrMalformedValue, key, err)
	}
	var v factValue
	if err := json.Unmarshal(value, &v); err != nil {
		return false, fmt.Errorf("%w: %s: %v", ErrMalformedValue, key, err)
	}
	if v.Exp < 0 {
		return false, fmt.Errorf("%w: %s: negative exp", ErrMalformedValue, key)
	}
	switch kind {
	case PrefixRevokeSession:
		s.mu.Lock()
		s.sessions[id] = v.Exp
		s.mu.Unlock()
	case PrefixRevokeUser:
		if v.Before == nil || *v.Before <= 0 {
			return false, fmt.Errorf("%w: %s: want a positive \"before\"", ErrMalformedValue, key)
		}
		s.mu.Lock()
		s.users[id] = userFact{before: *v.Before, exp: v.Exp}
		s.mu.Unlock()
	case PrefixGroups:
		if v.Groups == nil {
			return false, fmt.Errorf("%w: %s: missing \"groups\"", ErrMalformedValue, key)
		}
		if v.At == nil || *v.At <= 0 {
			return false, fmt.Errorf("%w: %s: want a positive \"at\"", ErrMalformedValue, key)
		}
		f := groupFact{groups: *v.Groups, at: *v.At, exp: v.Exp}
		if f.groups == nil {
			f.groups = []string{}
		}
		s.mu.Lock()
		s.groups[id] = f
		s.mu.Unlock()
	}
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

// Version changes whenever anything that can change a decision changes; a cache
// compares it with the version its entry was computed at.
func (s *State) Version() uint64 {
	return uint64(s.version.Load())
}

// VersionCounter exposes the version counter itself: under Yaegi a compiled
// Load on it is far cheaper than an interpreted call to Version. Only the
// state adds to it.
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
	n := now.Unix()
	s.mu.RLock()
	exp, sessionRevoked := s.sessions[sid]
	u, userRevoked := s.users[subjectKey]
	s.mu.RUnlock()
	if sessionRevoked && sid != "" && live(exp, n) {
		return true
	}
	if userRevoked && subjectKey != "" && iat <= u.before && live(u.exp, n) {
		return true
	}
	return false
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

// LastHeardUnix is LastHeard in unix seconds (0 = never), cheap for hot paths.
func (s *State) LastHeardUnix() int64 {
	return s.lastHeard.Load() / int64(time.Second)
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
func (s *State) Prune(now time.Time) int {
	n := now.Unix()
	dropped := 0
	s.mu.Lock()
	for id, exp := range s.sessions {
		if !live(exp, n) {
			delete(s.sessions, id)
			dropped++
		}
	}
	for id, f := range s.users {
		if !live(f.exp, n) {
			delete(s.users, id)
			dropped++
		}
	}
	for id, f := range s.groups {
		if !live(f.exp, n) {
			delete(s.groups, id)
			dropped++
		}
	}
	s.mu.Unlock()
	if dropped > 0 {
		s.changed()
	}
	return dropped
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
