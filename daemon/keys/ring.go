// Package keys is the daemon's key ring: the Ed25519 keys that sign session
// tokens and the trust anchor that signs the facts edges accept. The ring
// lives in a private JetStream KV bucket (one entry, written with optimistic
// concurrency so replicas never fight), its private halves sealed with the
// daemon's encryption key (package seal). It is generated on first start,
// rotates on command or on a schedule, revokes a key on command, and keeps
// old public keys until every token they signed has expired. Its public half
// is served as JWKS and published to the edge as a signed keys fact.
//
// The ring also keeps the *horizon*: for every session lifetime a replica
// has issued tokens under, until when such tokens can be live. Facts about
// tokens (revocations, overrides) and the buckets holding them are sized by
// the horizon, never by this replica's current lifetime, so shortening
// session.lifetime cannot bring a revoked token back.
//
// ring.go is the ring, its storage and what it signs; rotation.go rotates,
// revokes, publishes and maintains it; horizon.go keeps the horizon.
package keys

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/edgepass/edgepass/daemon/kvbucket"
	"github.com/edgepass/edgepass/daemon/seal"
	"github.com/edgepass/edgepass/plugin/edgestate"
	"github.com/edgepass/edgepass/plugin/policy"
	"github.com/edgepass/edgepass/plugin/token"
)

// ringKey is the single KV entry holding the whole ring.
const ringKey = "ring"

// Audience is the aud of every session token (contracts.md).
const Audience = policy.DefaultAudience

// KeysPublisher pushes the keys fact to the edges (the edge bucket's
// `keys`); *edgepub.Publisher implements it, signing with the trust anchor.
type KeysPublisher interface {
	PublishKeys(ctx context.Context, f edgestate.KeysFact) error
}

// Options configures the ring.
type Options struct {
	// Bucket is the private KV bucket (nats.keyBucket); Replicas its JetStream replicas.
	Bucket   string
	Replicas int
	// Lifetime is this replica's token lifetime (session.lifetime). It
	// enters the horizon; retired keys stay published Horizon+ClockSkew
	// after they stopped signing.
	Lifetime  time.Duration
	ClockSkew time.Duration
	// RotationInterval rotates the signing key when it is this old (0 = only on command).
	RotationInterval time.Duration
	// Issuer is the iss of signed tokens (publicURL).
	Issuer string
	// Seal encrypts the private keys at rest (keys.encryptionKeyFile); required.
	Seal   *seal.Key
	Logger *slog.Logger
	// Now is the clock (tests); default time.Now.
	Now func() time.Time
	// OnScheduledRotation, optional, runs on the replica that activated a
	// key rotated by RotationInterval (the audit trail records it).
	OnScheduledRotation func(ctx context.Context, kid string)
}

// storedKey is one key as persisted. Sealed is the Ed25519 seed sealed with
// the encryption key; Seed is a plaintext seed written by an edgepass before
// sealing existed (read once, sealed on the next write).
type storedKey struct {
	ID        string `json:"kid"`
	Seed      []byte `json:"seed,omitempty"`
	Sealed    string `json:"sealed,omitempty"`
	Created   int64  `json:"created"`
	Activated int64  `json:"activated,omitempty"` // 0 = published, not signing yet
	Retired   int64  `json:"retired,omitempty"`   // when it stopped signing
	Revoked   int64  `json:"revoked,omitempty"`   // when it was distrusted (private half wiped)
}

// storedAnchor is the trust anchor: the key that signs edge facts.
type storedAnchor struct {
	ID      string `json:"kid"`
	Sealed  string `json:"sealed"`
	Created int64  `json:"created"`
}

// lifetimeEntry says tokens of Lifetime seconds can be live until Until.
type lifetimeEntry struct {
	Lifetime int64 `json:"lifetime"`
	Until    int64 `json:"until"`
}

type storedRing struct {
	Keys    []storedKey     `json:"keys"`
	Anchor  *storedAnchor   `json:"anchor,omitempty"`
	Horizon []lifetimeEntry `json:"horizon,omitempty"`
	// StateKeys seal pending logins (statekey.go).
	StateKeys []storedStateKey `json:"stateKeys,omitempty"`
}

func (sr storedRing) clone() storedRing {
	out := storedRing{
		Keys:      append([]storedKey(nil), sr.Keys...),
		Horizon:   append([]lifetimeEntry(nil), sr.Horizon...),
		StateKeys: append([]storedStateKey(nil), sr.StateKeys...),
	}
	if sr.Anchor != nil {
		a := *sr.Anchor
		out.Anchor = &a
	}
	return out
}

// snapshot is an immutable view of the ring, swapped atomically.
type snapshot struct {
	rev     uint64
	stored  storedRing
	active  *storedKey
	priv    ed25519.PrivateKey
	anchor  ed25519.PrivateKey // nil until the ring has one
	public  *token.KeySet      // every key a live token may name (revoked ones left out)
	jwks    []byte
	revoked []string
	legacy  bool      // plaintext seeds present
	created time.Time // when the active key started signing
	// stateKeys are the login-state keys, newest (the one sealing) first.
	stateKeys []*seal.Key
}

// KeyInfo describes one key for status output (no private material).
type KeyInfo struct {
	ID        string    `json:"kid"`
	State     string    `json:"state"` // "active", "pending", "retired" or "revoked"
	Created   time.Time `json:"created"`
	Activated time.Time `json:"activated,omitzero"`
	Retired   time.Time `json:"retired,omitzero"`
	Revoked   time.Time `json:"revoked,omitzero"`
	// RemoveAfter is when a retired key's public half (or a revoked key's
	// entry in the edges' revoked list) is dropped.
	RemoveAfter time.Time `json:"removeAfter,omitzero"`
}

// Ring signs session tokens with the current key, signs edge facts with the
// trust anchor, and knows every public key a live token may name.
type Ring struct {
	o           Options
	kv          jetstream.KeyValue
	cur         atomic.Pointer[snapshot]
	pub         KeysPublisher
	mu          sync.Mutex // serializes writers in this process
	warnLegacy  sync.Once
	published   atomic.Int64 // horizon (seconds) in the last keys fact published
	stop        func()
	done        chan struct{}
	lastPublish atomic.Int64 // unix nanoseconds of the last keys fact published
	stateReload atomic.Int64 // unix nanoseconds of the last read for an unknown login-state key
}

var (
	// ErrNoKey means the ring has no active signing key (not started yet).
	ErrNoKey = errors.New("keys: no active signing key")
	// ErrUnknownKey means no key of the ring has that id.
	ErrUnknownKey = errors.New("keys: no such key in the ring; list them with `edgepass keys list`")
)

// Open creates the bucket if needed and loads the ring, generating on a fresh
// install the first signing key (pending until Start publishes it) and the
// trust anchor, sealing any plaintext seed an older edgepass left, and
// recording this replica's lifetime in the horizon. It publishes nothing:
// Start does, once the edge publisher (which needs the anchor) exists.
func Open(ctx context.Context, js jetstream.JetStream, o Options) (*Ring, error) {
	if o.Bucket == "" {
		return nil, errors.New("keys: bucket name required (nats.keyBucket)")
	}
	if o.Lifetime <= 0 {
		return nil, errors.New("keys: lifetime must be positive (session.lifetime)")
	}
	if o.Seal == nil {
		return nil, errors.New("keys: no encryption key (keys.encryptionKeyFile): the signing keys are never stored in clear")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	kv, err := kvbucket.Open(ctx, js, o.Bucket, "edgepass signing keys (private to the daemon, sealed)", 0, o.Replicas)
	if err != nil {
		return nil, fmt.Errorf("keys: %w", err)
	}
	r := &Ring{o: o, kv: kv}
	if err := r.load(ctx); err != nil {
		return nil, err
	}
	// Finish whatever a previous start or rotation left undone: no key or
	// anchor yet, plaintext seeds, retired keys past their retention, this
	// lifetime missing from the horizon.
	if err := r.mutate(ctx, func(sr *storedRing, now time.Time) (bool, error) {
		changed := pruneHorizon(sr, now)
		changed = prune(sr, now, r.retention(sr, now)) || changed
		changed = hasLegacy(sr) || changed
		if sr.Anchor == nil {
			a, err := r.newAnchor(now)
			if err != nil {
				return false, err
			}
			sr.Anchor = &a
			changed = true
		}
		if activeIndex(sr) < 0 {
			_, added, err := r.addPending(sr, now)
			if err != nil {
				return false, err
			}
			changed = added || changed
		}
		added, err := r.ensureStateKey(sr, now)
		if err != nil {
			return false, err
		}
		changed = pruneStateKeys(sr, now) || added || changed
		return r.extendHorizon(sr, now) || changed, nil
	}); err != nil {
		return nil, err
	}
	return r, nil
}

// Start publishes the keys fact (activating a pending key only after the
// edges have it: a fresh install's first key, an interrupted rotation) and
// starts following changes made by other replicas. pub may be nil (tests:
// nothing published). Close stops following.
func (r *Ring) Start(ctx context.Context, pub KeysPublisher) error {
	r.pub = pub
	if _, err := r.publishThenActivate(ctx); err != nil {
		return err
	}
	wctx, cancel := context.WithCancel(context.Background())
	w, err := r.kv.Watch(wctx, ringKey, jetstream.UpdatesOnly())
	if err != nil {
		cancel()
		return fmt.Errorf("keys: watch %s: %w", r.o.Bucket, err)
	}
	r.done = make(chan struct{})
	r.stop = func() { cancel(); _ = w.Stop() }
	go r.follow(wctx, w)
	r.o.Logger.Info("edge trust anchor: configure every edgepass middleware with trustAnchors: [<anchor>]",
		"anchor", r.Anchor(), "anchorID", r.AnchorID())
	return nil
}

// Close stops following other replicas' changes.
func (r *Ring) Close() {
	if r.stop != nil {
		r.stop()
		<-r.done
		r.stop = nil
	}
}

func (r *Ring) follow(ctx context.Context, w jetstream.KeyWatcher) {
	defer close(r.done)
	for {
		select {
		case <-ctx.Done():
			return
		case e, ok := <-w.Updates():
			if !ok {
				return
			}
			if e == nil || e.Operation() != jetstream.KeyValuePut {
				continue
			}
			if e.Revision() <= r.current().rev {
				continue
			}
			if err := r.install(e.Value(), e.Revision()); err != nil {
				r.o.Logger.Error("keys: ignoring unreadable key ring update", "err", err)
			}
		}
	}
}

// retention is how long a key stays after it stopped signing (or was
// revoked): until every token it signed has expired, under any lifetime a
// replica still issues.
func (r *Ring) retention(sr *storedRing, now time.Time) time.Duration {
	return horizonOf(sr, now, r.o.Lifetime) + r.o.ClockSkew
}

func (r *Ring) current() *snapshot {
	if s := r.cur.Load(); s != nil {
		return s
	}
	return &snapshot{}
}

// load reads the ring from the bucket (nothing stored yet is not an error).
func (r *Ring) load(ctx context.Context) error {
	e, err := r.kv.Get(ctx, ringKey)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("keys: read key ring from %s: %w", r.o.Bucket, err)
	}
	return r.install(e.Value(), e.Revision())
}

// install decodes a stored ring and swaps it in if it is newer.
func (r *Ring) install(data []byte, rev uint64) error {
	var sr storedRing
	if err := json.Unmarshal(data, &sr); err != nil {
		return fmt.Errorf("keys: decode key ring: %w", err)
	}
	snap, err := r.build(sr, rev)
	if err != nil {
		return err
	}
	if snap.legacy {
		r.warnLegacy.Do(func() {
			r.o.Logger.Warn("keys: the key ring holds signing keys in clear (written by an older edgepass); sealing them with the encryption key on the next write",
				"encryptionKey", r.o.Seal.ID())
		})
	}
	for {
		old := r.cur.Load()
		if old != nil && old.rev >= rev {
			return nil
		}
		if r.cur.CompareAndSwap(old, snap) {
			if old != nil && old.active != nil && snap.active != nil && old.active.ID != snap.active.ID {
				r.o.Logger.Info("keys: signing key changed", "kid", snap.active.ID, "previous", old.active.ID)
			}
			return nil
		}
	}
}

// Associated data binding each sealed secret to its slot in the ring.
func keyAAD(kid string) string    { return "edgepass key ring: signing key " + kid }
func anchorAAD(kid string) string { return "edgepass key ring: trust anchor " + kid }

// openSecret opens a sealed seed, explaining a foreign encryption key.
func (r *Ring) openSecret(sealed, aad, what string) ([]byte, error) {
	seed, err := r.o.Seal.Open(sealed, aad)
	var wk *seal.WrongKeyError
	if errors.As(err, &wk) {
		return nil, fmt.Errorf("keys: key ring %w", err)
	}
	if err != nil {
		return nil, fmt.Errorf("keys: key ring entry %s is damaged: %w", what, err)
	}
	return seed, nil
}

func (r *Ring) build(sr storedRing, rev uint64) (*snapshot, error) {
	snap := &snapshot{rev: rev, stored: sr}
	var pubs []token.Key
	// Newest first in the JWKS: the key most tokens name.
	order := make([]storedKey, len(sr.Keys))
	copy(order, sr.Keys)
	sort.SliceStable(order, func(i, j int) bool { return order[i].Created > order[j].Created })
	privs := map[string]ed25519.PrivateKey{}
	for _, k := range order {
		if k.ID == "" {
			return nil, errors.New("keys: key ring entry without a key id is damaged")
		}
		if k.Revoked > 0 {
			snap.revoked = append(snap.revoked, k.ID)
			continue
		}
		seed := k.Seed
		switch {
		case k.Sealed != "":
			var err error
			if seed, err = r.openSecret(k.Sealed, keyAAD(k.ID), "signing key "+k.ID); err != nil {
				return nil, err
			}
		case len(k.Seed) > 0:
			snap.legacy = true
		}
		if len(seed) != ed25519.SeedSize {
			return nil, fmt.Errorf("keys: key ring entry %q is damaged (seed of %d bytes)", k.ID, len(seed))
		}
		priv := ed25519.NewKeyFromSeed(seed)
		pub := priv.Public().(ed25519.PublicKey)
		if keyID(pub) != k.ID {
			return nil, fmt.Errorf("keys: key ring entry %q is damaged (its key has id %s)", k.ID, keyID(pub))
		}
		privs[k.ID] = priv
		pubs = append(pubs, token.Key{ID: k.ID, Public: pub})
	}
	if i := activeIndex(&sr); i >= 0 {
		k := sr.Keys[i]
		snap.active = &k
		snap.priv = privs[k.ID]
		snap.created = time.Unix(k.Activated, 0)
	}
	if a := sr.Anchor; a != nil {
		seed, err := r.openSecret(a.Sealed, anchorAAD(a.ID), "trust anchor "+a.ID)
		if err != nil {
			return nil, err
		}
		if len(seed) != ed25519.SeedSize {
			return nil, fmt.Errorf("keys: key ring's trust anchor is damaged (seed of %d bytes)", len(seed))
		}
		priv := ed25519.NewKeyFromSeed(seed)
		if id := token.AnchorID(priv.Public().(ed25519.PublicKey)); id != a.ID {
			return nil, fmt.Errorf("keys: key ring's trust anchor %q is damaged (its key has id %s)", a.ID, id)
		}
		snap.anchor = priv
	}
	states, err := r.buildStateKeys(&sr)
	if err != nil {
		return nil, err
	}
	snap.stateKeys = states
	snap.public = token.NewKeySet(pubs...)
	if snap.public.Len() > 0 {
		jwks, err := snap.public.MarshalJWKS()
		if err != nil {
			return nil, fmt.Errorf("keys: marshal JWKS: %w", err)
		}
		snap.jwks = jwks
	} else {
		snap.jwks = []byte(`{"keys":[]}`)
	}
	return snap, nil
}

// maxMutateAttempts bounds mutate's retries when other replicas keep writing.
const maxMutateAttempts = 10

// mutate applies f to the latest stored ring and writes it back if f
// reports a change, retrying from a fresh read when another replica wrote
// in between (optimistic concurrency on the KV revision). Every write seals
// plaintext seeds an older edgepass left.
func (r *Ring) mutate(ctx context.Context, f func(sr *storedRing, now time.Time) (bool, error)) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for attempt := 0; attempt < maxMutateAttempts; attempt++ {
		if err := r.load(ctx); err != nil {
			return err
		}
		cur := r.current()
		sr := cur.stored.clone()
		changed, err := f(&sr, r.o.Now())
		if err != nil || !changed {
			return err
		}
		r.sealLegacy(&sr)
		data, err := json.Marshal(sr)
		if err != nil {
			return fmt.Errorf("keys: encode key ring: %w", err)
		}
		var rev uint64
		if cur.rev == 0 {
			rev, err = r.kv.Create(ctx, ringKey, data)
		} else {
			rev, err = r.kv.Update(ctx, ringKey, data, cur.rev)
		}
		if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			continue // another replica won; re-read and re-decide
		}
		if err != nil {
			return fmt.Errorf("keys: write key ring to %s: %w", r.o.Bucket, err)
		}
		return r.install(data, rev)
	}
	return errors.New("keys: key ring kept changing under us; retry")
}

// sealLegacy replaces plaintext seeds by sealed ones.
func (r *Ring) sealLegacy(sr *storedRing) {
	for i := range sr.Keys {
		k := &sr.Keys[i]
		if len(k.Seed) > 0 && k.Sealed == "" && k.Revoked == 0 {
			k.Sealed = r.o.Seal.Seal(k.Seed, keyAAD(k.ID))
		}
		k.Seed = nil
	}
}

func hasLegacy(sr *storedRing) bool {
	for _, k := range sr.Keys {
		if len(k.Seed) > 0 {
			return true
		}
	}
	return false
}

// KeyID is the id of the current signing key.
func (r *Ring) KeyID() string {
	if a := r.current().active; a != nil {
		return a.ID
	}
	return ""
}

// PublicKeys is every key a live token may name (pending, active, retired;
// never revoked).
func (r *Ring) PublicKeys() *token.KeySet { return r.current().public }

// JWKS is PublicKeys in JWKS form.
func (r *Ring) JWKS() []byte { return r.current().jwks }

// AnchorID is the trust anchor's key id (the kid of the facts it signs).
func (r *Ring) AnchorID() string {
	if a := r.current().stored.Anchor; a != nil {
		return a.ID
	}
	return ""
}

// Anchor is the trust anchor's public key in the text form edges are
// configured with (plugin setting trustAnchors; `edgepass keys anchor`).
func (r *Ring) Anchor() string {
	if a := r.current().anchor; a != nil {
		return token.FormatAnchor(a.Public().(ed25519.PublicKey))
	}
	return ""
}

// AnchorKeys is the trust anchor as a key set, for reading facts back
// (edgestate.NewWithAnchors).
func (r *Ring) AnchorKeys() *token.KeySet {
	a := r.current().anchor
	if a == nil {
		return nil
	}
	pub := a.Public().(ed25519.PublicKey)
	return token.NewKeySet(token.Key{ID: token.AnchorID(pub), Public: pub})
}

// AnchorSigningKey is the trust anchor's private key, for the edge
// publisher only (edgepub.Options.Anchor): it signs what edges trust.
func (r *Ring) AnchorSigningKey() ed25519.PrivateKey { return r.current().anchor }

// Keys describes the ring for status output.
func (r *Ring) Keys() []KeyInfo {
	cur := r.current()
	ret := r.retention(&cur.stored, r.o.Now())
	out := make([]KeyInfo, 0, len(cur.stored.Keys))
	for _, k := range cur.stored.Keys {
		ki := KeyInfo{ID: k.ID, Created: time.Unix(k.Created, 0)}
		if k.Activated > 0 {
			ki.Activated = time.Unix(k.Activated, 0)
		}
		if k.Retired > 0 {
			ki.Retired = time.Unix(k.Retired, 0)
		}
		switch {
		case k.Revoked > 0:
			ki.State = "revoked"
			ki.Revoked = time.Unix(k.Revoked, 0)
			ki.RemoveAfter = ki.Revoked.Add(ret)
		case k.Activated == 0:
			ki.State = "pending"
		case k.Retired == 0:
			ki.State = "active"
		default:
			ki.State = "retired"
			ki.RemoveAfter = ki.Retired.Add(ret)
		}
		out = append(out, ki)
	}
	return out
}

// SignClaims signs c with the current key; token.Sign refuses a token over
// token.MaxTokenSize with token.ErrTooLarge. It returns the key id used.
func (r *Ring) SignClaims(c *token.Claims) (string, string, error) {
	cur := r.current()
	if cur.active == nil {
		return "", "", ErrNoKey
	}
	raw, err := token.Sign(c, cur.active.ID, cur.priv)
	return raw, cur.active.ID, err
}

// keyID is a session key's kid (token.KeyHash, like a trust anchor's).
func keyID(pub ed25519.PublicKey) string { return token.KeyHash(pub) }

// addPending appends a new pending key to sr unless one is pending
// already; it returns the pending key's id and whether it was added.
func (r *Ring) addPending(sr *storedRing, now time.Time) (kid string, added bool, err error) {
	if i := pendingIndex(sr); i >= 0 {
		return sr.Keys[i].ID, false, nil
	}
	k, err := r.newKey(now)
	if err != nil {
		return "", false, err
	}
	sr.Keys = append(sr.Keys, k)
	return k.ID, true, nil
}

// newKey generates a pending key, its seed sealed.
func (r *Ring) newKey(now time.Time) (storedKey, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return storedKey{}, fmt.Errorf("keys: generate Ed25519 key: %w", err)
	}
	kid := keyID(pub)
	return storedKey{ID: kid, Sealed: r.o.Seal.Seal(priv.Seed(), keyAAD(kid)), Created: now.Unix()}, nil
}

// newAnchor generates the trust anchor, its seed sealed.
func (r *Ring) newAnchor(now time.Time) (storedAnchor, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return storedAnchor{}, fmt.Errorf("keys: generate the trust anchor: %w", err)
	}
	id := token.AnchorID(pub)
	return storedAnchor{ID: id, Sealed: r.o.Seal.Seal(priv.Seed(), anchorAAD(id)), Created: now.Unix()}, nil
}

func indexOf(sr *storedRing, kid string) int {
	for i, k := range sr.Keys {
		if k.ID == kid {
			return i
		}
	}
	return -1
}

func activeIndex(sr *storedRing) int {
	best := -1
	for i, k := range sr.Keys {
		if k.Activated > 0 && k.Retired == 0 && k.Revoked == 0 && (best < 0 || k.Activated > sr.Keys[best].Activated) {
			best = i
		}
	}
	return best
}

func pendingIndex(sr *storedRing) int {
	for i, k := range sr.Keys {
		if k.Activated == 0 && k.Revoked == 0 {
			return i
		}
	}
	return -1
}
