// Package keys is the daemon's Ed25519 signing key ring. The ring lives in a
// private JetStream KV bucket (one entry, written with optimistic concurrency
// so replicas never fight), is generated on first start, rotates on command or
// on a schedule, and keeps old public keys until every token they signed has
// expired. Its public half is served as JWKS and published to the edge.
package keys

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edgepass/edgepass/daemon/kvbucket"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/edgepass/edgepass/plugin/token"
)

// ringKey is the single KV entry holding the whole ring.
const ringKey = "ring"

// Audience is the aud of every session token (contracts.md).
const Audience = "edgepass"

// JWKSPublisher pushes the public keys to the edges (the edge bucket's `keys`).
type JWKSPublisher interface {
	PublishKeys(ctx context.Context, jwks []byte) error
}

// Options configures the ring.
type Options struct {
	// Bucket is the private KV bucket (nats.keyBucket); Replicas its JetStream replicas.
	Bucket   string
	Replicas int
	// Lifetime is the longest token lifetime (session.lifetime): a retired
	// key's public half stays published Lifetime+ClockSkew after it stopped signing.
	Lifetime  time.Duration
	ClockSkew time.Duration
	// RotationInterval rotates the signing key when it is this old (0 = only on command).
	RotationInterval time.Duration
	// Issuer is the iss of signed tokens (publicURL).
	Issuer string
	// Publisher receives the JWKS at start, on every change and periodically
	// (so the entry never ages out of the edge bucket). Optional.
	Publisher JWKSPublisher
	Logger    *slog.Logger
	// Now is the clock (tests); default time.Now.
	Now func() time.Time
}

// storedKey is one key as persisted; Seed is the Ed25519 private seed.
type storedKey struct {
	ID        string `json:"kid"`
	Seed      []byte `json:"seed"`
	Created   int64  `json:"created"`
	Activated int64  `json:"activated,omitempty"` // 0 = published, not signing yet
	Retired   int64  `json:"retired,omitempty"`   // when it stopped signing
}

type storedRing struct {
	Keys []storedKey `json:"keys"`
}

// snapshot is an immutable view of the ring, swapped atomically.
type snapshot struct {
	rev     uint64
	stored  storedRing
	active  *storedKey
	priv    ed25519.PrivateKey
	public  *token.KeySet
	jwks    []byte
	created time.Time // when the active key started signing
}

// KeyInfo describes one key for status output (no private material).
type KeyInfo struct {
	ID        string    `json:"kid"`
	State     string    `json:"state"` // "active", "pending" or "retired"
	Created   time.Time `json:"created"`
	Activated time.Time `json:"activated,omitzero"`
	Retired   time.Time `json:"retired,omitzero"`
	// RemoveAfter is when a retired key's public half is dropped.
	RemoveAfter time.Time `json:"removeAfter,omitzero"`
}

// Ring signs session tokens with the current key and knows every public key
// a live token may name.
type Ring struct {
	o    Options
	kv   jetstream.KeyValue
	cur  atomic.Pointer[snapshot]
	mu   sync.Mutex // serializes writers in this process
	stop func()
	done chan struct{}
}

// ErrNoKey means the ring has no active signing key (not loaded yet).
var ErrNoKey = errors.New("keys: no active signing key")

// Open creates the bucket if needed, loads the ring (generating the first
// key on a fresh install), publishes the JWKS and starts following changes
// made by other replicas. Close stops following.
func Open(ctx context.Context, js jetstream.JetStream, o Options) (*Ring, error) {
	if o.Bucket == "" {
		return nil, errors.New("keys: bucket name required (nats.keyBucket)")
	}
	if o.Lifetime <= 0 {
		return nil, errors.New("keys: lifetime must be positive (session.lifetime)")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	kv, err := kvbucket.Open(ctx, js, o.Bucket, "edgepass signing keys (private to the daemon)", 0, o.Replicas)
	if err != nil {
		return nil, fmt.Errorf("keys: %w", err)
	}
	r := &Ring{o: o, kv: kv, done: make(chan struct{})}

	if err := r.load(ctx); err != nil {
		return nil, err
	}
	// Finish whatever a previous start or rotation left undone: no key yet,
	// a pending key never activated, retired keys past their retention.
	if err := r.mutate(ctx, func(sr *storedRing, now time.Time) (bool, error) {
		changed := prune(sr, now, r.retention())
		if activeIndex(sr) < 0 && pendingIndex(sr) < 0 {
			k, err := newKey(now)
			if err != nil {
				return false, err
			}
			sr.Keys = append(sr.Keys, k)
			changed = true
		}
		return changed, nil
	}); err != nil {
		return nil, err
	}
	// A pending key (a fresh install, or an interrupted rotation) is
	// published before it signs.
	if _, err := r.publishThenActivate(ctx); err != nil {
		return nil, err
	}

	wctx, cancel := context.WithCancel(context.Background())
	w, err := kv.Watch(wctx, ringKey, jetstream.UpdatesOnly())
	if err != nil {
		cancel()
		return nil, fmt.Errorf("keys: watch %s: %w", o.Bucket, err)
	}
	r.stop = func() { cancel(); _ = w.Stop() }
	go r.follow(wctx, w)
	return r, nil
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

func (r *Ring) retention() time.Duration { return r.o.Lifetime + r.o.ClockSkew }

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

func (r *Ring) build(sr storedRing, rev uint64) (*snapshot, error) {
	snap := &snapshot{rev: rev, stored: sr}
	var pubs []token.Key
	// Newest first in the JWKS: the key most tokens name.
	order := make([]storedKey, len(sr.Keys))
	copy(order, sr.Keys)
	sort.SliceStable(order, func(i, j int) bool { return order[i].Created > order[j].Created })
	for i := range order {
		k := order[i]
		if len(k.Seed) != ed25519.SeedSize || k.ID == "" {
			return nil, fmt.Errorf("keys: key ring entry %q is damaged (seed of %d bytes)", k.ID, len(k.Seed))
		}
		priv := ed25519.NewKeyFromSeed(k.Seed)
		pubs = append(pubs, token.Key{ID: k.ID, Public: priv.Public().(ed25519.PublicKey)})
	}
	if i := activeIndex(&sr); i >= 0 {
		k := sr.Keys[i]
		snap.active = &k
		snap.priv = ed25519.NewKeyFromSeed(k.Seed)
		snap.created = time.Unix(k.Activated, 0)
	}
	snap.public = token.NewKeySet(pubs...)
	jwks, err := snap.public.MarshalJWKS()
	if err != nil {
		return nil, fmt.Errorf("keys: marshal JWKS: %w", err)
	}
	snap.jwks = jwks
	return snap, nil
}

// mutate applies f to the latest stored ring and writes it back if f
// reports a change, retrying from a fresh read when another replica wrote
// in between (optimistic concurrency on the KV revision).
func (r *Ring) mutate(ctx context.Context, f func(sr *storedRing, now time.Time) (bool, error)) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for attempt := 0; attempt < 10; attempt++ {
		if err := r.load(ctx); err != nil {
			return err
		}
		cur := r.current()
		sr := storedRing{Keys: append([]storedKey(nil), cur.stored.Keys...)}
		changed, err := f(&sr, r.o.Now())
		if err != nil || !changed {
			return err
		}
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

// Rotate makes a new key the signing key. The new public key reaches the
// edge bucket before any token is signed with it; the previous key keeps
// verifying until its tokens have expired. It returns the new key id.
func (r *Ring) Rotate(ctx context.Context) (string, error) {
	var kid string
	err := r.mutate(ctx, func(sr *storedRing, now time.Time) (bool, error) {
		prune(sr, now, r.retention())
		if i := pendingIndex(sr); i >= 0 {
			kid = sr.Keys[i].ID // an unfinished rotation: finish it
			return false, nil
		}
		k, err := newKey(now)
		if err != nil {
			return false, err
		}
		kid = k.ID
		sr.Keys = append(sr.Keys, k)
		return true, nil
	})
	if err != nil {
		return "", err
	}
	if _, err := r.publishThenActivate(ctx); err != nil {
		return "", err
	}
	r.o.Logger.Info("keys: rotated signing key", "kid", kid)
	return kid, nil
}

// publishThenActivate publishes the JWKS and, when a key is pending, makes
// it the signing key and publishes again: a key reaches the edge bucket
// before any token is signed with it, and the edges end up with the ring as
// it now is. It reports whether a pending key was activated.
func (r *Ring) publishThenActivate(ctx context.Context) (bool, error) {
	if err := r.publish(ctx); err != nil {
		return false, err
	}
	if pendingIndex(&r.current().stored) < 0 {
		return false, nil
	}
	if err := r.activatePending(ctx); err != nil {
		return false, err
	}
	return true, r.publish(ctx)
}

// activatePending turns the pending key into the signing key and retires the
// previous one. Called only after the pending key was published.
func (r *Ring) activatePending(ctx context.Context) error {
	return r.mutate(ctx, func(sr *storedRing, now time.Time) (bool, error) {
		p := pendingIndex(sr)
		if p < 0 {
			return false, nil // another replica finished it
		}
		if a := activeIndex(sr); a >= 0 {
			sr.Keys[a].Retired = now.Unix()
		}
		sr.Keys[p].Activated = now.Unix()
		return true, nil
	})
}

// maxPublishRounds bounds publish's re-reads of a ring that keeps changing.
const maxPublishRounds = 10

// publish pushes the current JWKS to the edge. The edge's keys entry is
// last-writer-wins across replicas, so after writing, the ring is read
// again: if another replica changed it meanwhile, the newer JWKS is written
// too. Otherwise a replica whose write lands after another's rotation would
// leave the edges without the new key until the next periodic republish.
func (r *Ring) publish(ctx context.Context) error {
	if r.o.Publisher == nil {
		return nil
	}
	for range maxPublishRounds {
		snap := r.current()
		if err := r.o.Publisher.PublishKeys(ctx, snap.jwks); err != nil {
			return fmt.Errorf("keys: publish JWKS to the edge: %w", err)
		}
		if err := r.load(ctx); err != nil {
			return err
		}
		if r.current().rev == snap.rev {
			return nil
		}
	}
	return errors.New("keys: key ring kept changing while publishing the JWKS; retry")
}

// Maintain rotates on schedule, drops expired public keys and republishes
// the JWKS so the edge bucket (whose entries age out) always holds it. It
// checks every interval (0 = a default of 1 minute) until ctx ends.
func (r *Ring) Maintain(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		interval = time.Minute
	}
	republish := r.o.Lifetime / 4
	if republish > time.Hour {
		republish = time.Hour
	}
	lastPublish := r.o.Now()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := r.Tick(ctx); err != nil {
			r.o.Logger.Error("keys: maintenance", "err", err)
			continue
		}
		if now := r.o.Now(); now.Sub(lastPublish) >= republish {
			if err := r.publish(ctx); err != nil {
				r.o.Logger.Error("keys: republish JWKS", "err", err)
				continue
			}
			lastPublish = now
		}
	}
}

// Tick does one maintenance step: rotate when the signing key is older than
// RotationInterval, and drop public keys no live token can name. Replicas
// may all call it: the first writer wins, the others see a fresh key.
func (r *Ring) Tick(ctx context.Context) error {
	if err := r.load(ctx); err != nil {
		return err
	}
	cur := r.current()
	if iv := r.o.RotationInterval; iv > 0 && cur.active != nil && r.o.Now().Sub(cur.created) >= iv {
		before := cur.active.ID
		if err := r.mutate(ctx, func(sr *storedRing, now time.Time) (bool, error) {
			if a := activeIndex(sr); a >= 0 && sr.Keys[a].ID != before {
				return false, nil // another replica rotated already
			}
			if pendingIndex(sr) >= 0 {
				return false, nil
			}
			k, err := newKey(now)
			if err != nil {
				return false, err
			}
			sr.Keys = append(sr.Keys, k)
			return true, nil
		}); err != nil {
			return err
		}
	}
	published := cur.rev // the ring the edges hold, as far as this tick knows
	if pendingIndex(&r.current().stored) >= 0 {
		activated, err := r.publishThenActivate(ctx)
		if err != nil {
			return err
		}
		if activated {
			r.o.Logger.Info("keys: rotated signing key on schedule", "kid", r.KeyID())
		}
		published = r.current().rev
	}
	pruned := false
	if err := r.mutate(ctx, func(sr *storedRing, now time.Time) (bool, error) {
		pruned = prune(sr, now, r.retention())
		return pruned, nil
	}); err != nil {
		return err
	}
	if pruned || r.current().rev != published {
		return r.publish(ctx)
	}
	return nil
}

// KeyID is the id of the current signing key.
func (r *Ring) KeyID() string {
	if a := r.current().active; a != nil {
		return a.ID
	}
	return ""
}

// PublicKeys is every key a live token may name (pending, active, retired).
func (r *Ring) PublicKeys() *token.KeySet { return r.current().public }

// JWKS is PublicKeys in JWKS form.
func (r *Ring) JWKS() []byte { return r.current().jwks }

// Keys describes the ring for status output.
func (r *Ring) Keys() []KeyInfo {
	cur := r.current()
	out := make([]KeyInfo, 0, len(cur.stored.Keys))
	for _, k := range cur.stored.Keys {
		ki := KeyInfo{ID: k.ID, Created: time.Unix(k.Created, 0)}
		switch {
		case k.Activated == 0:
			ki.State = "pending"
		case k.Retired == 0:
			ki.State = "active"
			ki.Activated = time.Unix(k.Activated, 0)
		default:
			ki.State = "retired"
			ki.Activated = time.Unix(k.Activated, 0)
			ki.Retired = time.Unix(k.Retired, 0)
			ki.RemoveAfter = ki.Retired.Add(r.retention())
		}
		out = append(out, ki)
	}
	return out
}

// SignClaims signs c with the current key; token.Sign refuses a token over
// token.MaxTokenSize with token.ErrTooLarge.
func (r *Ring) SignClaims(c *token.Claims) (string, error) {
	cur := r.current()
	if cur.active == nil {
		return "", ErrNoKey
	}
	return token.Sign(c, cur.active.ID, cur.priv)
}

// newKey generates a pending key; kid = base64url(SHA-256(public key))[:16].
func newKey(now time.Time) (storedKey, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return storedKey{}, fmt.Errorf("keys: generate Ed25519 key: %w", err)
	}
	sum := sha256.Sum256(pub)
	return storedKey{
		ID:      base64.RawURLEncoding.EncodeToString(sum[:])[:16],
		Seed:    priv.Seed(),
		Created: now.Unix(),
	}, nil
}

func activeIndex(sr *storedRing) int {
	best := -1
	for i, k := range sr.Keys {
		if k.Activated > 0 && k.Retired == 0 && (best < 0 || k.Activated > sr.Keys[best].Activated) {
			best = i
		}
	}
	return best
}

func pendingIndex(sr *storedRing) int {
	for i, k := range sr.Keys {
		if k.Activated == 0 {
			return i
		}
	}
	return -1
}

// prune drops retired keys whose tokens have all expired.
func prune(sr *storedRing, now time.Time, retention time.Duration) bool {
	kept := sr.Keys[:0:0]
	for _, k := range sr.Keys {
		if k.Retired > 0 && now.After(time.Unix(k.Retired, 0).Add(retention)) {
			continue
		}
		kept = append(kept, k)
	}
	changed := len(kept) != len(sr.Keys)
	sr.Keys = kept
	return changed
}
