// Package edgepub is the daemon's side of the edge state: it publishes facts
// (revocations, signed group overrides, the signed keys fact) to the edge KV
// bucket exactly as docs/contracts.md lays them out, follows that bucket into
// an edgestate.State for /verify, and collects the edges' heartbeats.
package edgepub

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/edgepass/edgepass/daemon/kvbucket"
	"github.com/edgepass/edgepass/daemon/session"
	"github.com/edgepass/edgepass/plugin/edgestate"
	"github.com/edgepass/edgepass/plugin/idptoken"
	"github.com/edgepass/edgepass/plugin/token"
)

// Fact kinds, passed to Options.Observe (a bounded label set for metrics).
const (
	KindRevokeSession = "revoke_session"
	KindRevokeUser    = "revoke_user"
	KindGroups        = "groups"
	KindKeys          = "keys"
)

// Limits on a user's group list, shared by everything that produces one (IdP
// claims at login and refresh, the admin API), so a list accepted there is
// never refused when published: the edge refuses values over 64 KiB.
const (
	// MaxGroups is the most groups a user has; SetGroups refuses more.
	// The edges map IdP access tokens to the same limits.
	MaxGroups = idptoken.MaxGroups
	// MaxGroupName is the longest group name kept.
	MaxGroupName = idptoken.MaxGroupName
	// MaxGroupBytes bounds the names of a whole list, so the fact carrying
	// it stays well inside the edge's value limit.
	MaxGroupBytes = 32 << 10
)

// Options configures the publisher.
type Options struct {
	// Bucket is the edge KV bucket (nats.edgeBucket); Replicas its JetStream replicas.
	Bucket   string
	Replicas int
	// Anchor is the trust anchor's private key (keys.Ring.AnchorSigningKey):
	// it signs the keys and groups facts, which edges accept only signed.
	// Required.
	Anchor ed25519.PrivateKey
	// Horizon is the longest token lifetime still live (*keys.Ring): how
	// long revocations and overrides last, and with TTLMargin the bucket's
	// max age. Nil = a fixed Lifetime.
	Horizon kvbucket.Horizon
	// Lifetime is used when Horizon is nil (tests, one replica).
	Lifetime time.Duration
	// Observe, if set, receives how long each publish took until JetStream
	// acknowledged it (for a latency histogram) and its error.
	Observe func(kind string, d time.Duration, err error)
	// Now is the clock (tests); default time.Now.
	Now func() time.Time
}

// TTLMargin keeps edge facts longer than a token can live: an edge that
// replays the bucket still sees a revocation while a token it covers is
// inside the edges' clock-skew allowance (at most 5 minutes) and the edges'
// own PruneGrace.
const TTLMargin = edgestate.PruneGrace + time.Minute

// Publisher writes edge facts; every method returns after JetStream stored
// the fact, so a revocation reported as done reaches every edge that syncs.
type Publisher struct {
	bucket  *kvbucket.Sized
	kv      jetstream.KeyValue
	anchors *token.KeySet
	o       Options
}

// OpenPublisher creates the edge bucket (max age = horizon + TTLMargin,
// history 1, file storage) or raises its max age to that.
func OpenPublisher(ctx context.Context, js jetstream.JetStream, o Options) (*Publisher, error) {
	if o.Bucket == "" {
		return nil, errors.New("edgepub: bucket name required (nats.edgeBucket)")
	}
	if len(o.Anchor) != ed25519.PrivateKeySize {
		return nil, errors.New("edgepub: the trust anchor is required to sign edge facts (keys.Ring.AnchorSigningKey)")
	}
	if o.Horizon == nil {
		if o.Lifetime <= 0 {
			return nil, errors.New("edgepub: lifetime must be positive (session.lifetime)")
		}
		o.Horizon = kvbucket.FixedHorizon(o.Lifetime)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	b, err := kvbucket.OpenSized(ctx, js, o.Bucket, "edgepass edge state: revocations, group overrides, public keys", o.Replicas, o.Horizon, TTLMargin)
	if err != nil {
		return nil, fmt.Errorf("edgepub: %w", err)
	}
	pub := o.Anchor.Public().(ed25519.PublicKey)
	anchors := token.NewKeySet(token.Key{ID: token.AnchorID(pub), Public: pub})
	return &Publisher{bucket: b, kv: b.KV, anchors: anchors, o: o}, nil
}

// FitTTL sets the bucket's max age to horizon + TTLMargin, lowering it once
// the longest-lived tokens have expired; run it on the maintenance tick.
func (p *Publisher) FitTTL(ctx context.Context) error {
	if err := p.bucket.Fit(ctx); err != nil {
		return fmt.Errorf("edgepub: %w", err)
	}
	return nil
}

// TTL is the edge bucket's max age as last set.
func (p *Publisher) TTL() time.Duration { return p.bucket.TTL() }

func (p *Publisher) horizon() time.Duration { return p.o.Horizon.Horizon() }

// RevokeSession makes every edge refuse tokens with this sid until exp (the
// session's expiry; a zero exp means "for as long as any token can live").
func (p *Publisher) RevokeSession(ctx context.Context, sid string, exp time.Time) error {
	if !session.ValidID(sid) {
		return fmt.Errorf("edgepub: revoke session: malformed session id")
	}
	if exp.IsZero() {
		exp = p.o.Now().Add(p.horizon())
	}
	f := edgestate.SessionRevocation{Exp: exp.Unix()}
	return p.putRevocation(ctx, KindRevokeSession, edgestate.PrefixRevokeSession+sid, f, func(old []byte) (any, bool) {
		var o edgestate.SessionRevocation
		if json.Unmarshal(old, &o) != nil {
			return f, true
		}
		m := f.Merge(o)
		return m, m != o
	})
}

// RevokeUser makes every edge refuse the subject's tokens issued at or
// before before; the fact lasts until those tokens have expired, under any
// lifetime still live (the horizon).
func (p *Publisher) RevokeUser(ctx context.Context, subject string, before time.Time) error {
	if subject == "" {
		return errors.New("edgepub: revoke user: empty subject")
	}
	if before.IsZero() {
		before = p.o.Now()
	}
	f := edgestate.UserRevocation{Before: before.Unix(), Exp: before.Add(p.horizon()).Unix()}
	return p.putRevocation(ctx, KindRevokeUser, edgestate.PrefixRevokeUser+token.SubjectKey(subject), f, func(old []byte) (any, bool) {
		var o edgestate.UserRevocation
		if json.Unmarshal(old, &o) != nil || o.Before <= 0 {
			return f, true
		}
		m := f.Merge(o)
		return m, m != o
	})
}

// SetGroups replaces the subject's groups in every token issued until now,
// as the IdP reported them at refresh; a later login takes the IdP's groups.
func (p *Publisher) SetGroups(ctx context.Context, subject string, groups []string) error {
	return p.setGroups(ctx, subject, groups, false)
}

// SetAdminGroups is SetGroups for an administrator's override: new logins
// and refreshes keep it until it is cleared or expires.
func (p *Publisher) SetAdminGroups(ctx context.Context, subject string, groups []string) error {
	return p.setGroups(ctx, subject, groups, true)
}

func (p *Publisher) setGroups(ctx context.Context, subject string, groups []string, admin bool) error {
	if subject == "" {
		return errors.New("edgepub: set groups: empty subject")
	}
	if len(groups) > MaxGroups {
		return fmt.Errorf("edgepub: set groups: %d groups, limit %d", len(groups), MaxGroups)
	}
	if groups == nil {
		groups = []string{}
	}
	now := p.o.Now()
	f := edgestate.GroupsFact{Groups: groups, At: now.Unix(), Exp: now.Add(p.horizon()).Unix(), Admin: admin}
	return p.putGroups(ctx, subject, f)
}

// ClearGroups removes the subject's group override (tokens keep their own
// groups) with a signed clear fact: edges refuse deletes, and remember the
// clear so an older override cannot be replayed over it.
func (p *Publisher) ClearGroups(ctx context.Context, subject string) error {
	if subject == "" {
		return errors.New("edgepub: clear groups: empty subject")
	}
	now := p.o.Now()
	return p.putGroups(ctx, subject, edgestate.GroupsFact{Clear: true, At: now.Unix(), Exp: now.Add(p.horizon()).Unix()})
}

func (p *Publisher) putGroups(ctx context.Context, subject string, f edgestate.GroupsFact) error {
	sk := token.SubjectKey(subject)
	return p.putSigned(ctx, KindGroups, edgestate.PrefixGroups+sk, func(iat int64) ([]byte, error) {
		f.Iat = iat
		return edgestate.SignGroups(sk, f, p.o.Anchor)
	})
}

// GroupsOverride returns the groups an administrator set for the subject
// while they are still in force, so a new login carries them too. Only a
// fact signed by the trust anchor counts, as at the edges.
func (p *Publisher) GroupsOverride(ctx context.Context, subject string) ([]string, bool, error) {
	key := edgestate.PrefixGroups + token.SubjectKey(subject)
	e, err := p.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("edgepub: read groups: %w", err)
	}
	var f edgestate.GroupsFact
	if !p.readSigned(key, e.Value(), &f) {
		return nil, false, nil // unsigned (an older edgepass, or forged): edges ignore it too
	}
	if f.Clear || !f.Admin || (f.Exp > 0 && p.o.Now().Unix() > f.Exp) {
		return nil, false, nil
	}
	return f.Groups, true, nil
}

// readSigned verifies a signed fact with the anchor, as the edges do, and
// decodes it into dst; false if it is not a valid fact for key.
func (p *Publisher) readSigned(key string, value []byte, dst any) bool {
	return edgestate.OpenSigned(key, value, p.anchors, dst) == nil
}

// PublishKeys replaces the edges' verification keys with f (JWKS, revoked
// key ids, longest token lifetime), signed with the trust anchor; it
// implements keys.KeysPublisher.
func (p *Publisher) PublishKeys(ctx context.Context, f edgestate.KeysFact) error {
	if _, err := token.ParseJWKS(f.JWKS); err != nil {
		return fmt.Errorf("edgepub: refusing to publish an unusable JWKS: %w", err)
	}
	if f.MaxTokenLifetime <= 0 {
		return errors.New("edgepub: refusing to publish keys without a token lifetime bound")
	}
	return p.putSigned(ctx, KindKeys, edgestate.KeyKeys, func(iat int64) ([]byte, error) {
		f.Iat = iat
		return edgestate.SignKeys(f, p.o.Anchor)
	})
}

// maxWriteAttempts bounds the optimistic-concurrency retries of one fact.
const maxWriteAttempts = 10

// putSigned writes a signed fact whose iat (ms) is now, or just after the
// fact it replaces when that one is newer (another replica's clock runs
// ahead): edges refuse an older iat than the one they hold, so the bucket's
// facts must never go back in time. The write is conditional on the
// revision read, so two replicas cannot interleave.
func (p *Publisher) putSigned(ctx context.Context, kind, key string, sign func(iat int64) ([]byte, error)) error {
	return p.writeFact(ctx, kind, key, func(held []byte, found bool) ([]byte, bool, error) {
		var prevIat int64
		if found {
			var h struct {
				Iat int64 `json:"iat"`
			}
			if p.readSigned(key, held, &h) {
				prevIat = h.Iat
			}
		}
		data, err := sign(max(p.o.Now().UnixMilli(), prevIat+1))
		if err != nil {
			return nil, false, fmt.Errorf("edgepub: sign %s: %w", kind, err)
		}
		if len(data) > edgestate.MaxValueSize {
			return nil, false, fmt.Errorf("edgepub: %s value of %d bytes exceeds the edge limit %d", kind, len(data), edgestate.MaxValueSize)
		}
		return data, false, nil
	})
}

// putRevocation writes a revocation so that the bucket's value only grows,
// as the edges' does: the first write creates it; when one is held, merge
// combines both (later before, later exp) and the merged value replaces it
// at the revision read.
func (p *Publisher) putRevocation(ctx context.Context, kind, key string, v any, merge func(old []byte) (any, bool)) error {
	return p.writeFact(ctx, kind, key, func(held []byte, found bool) ([]byte, bool, error) {
		if found {
			merged, changed := merge(held)
			if !changed {
				return nil, true, nil // what is held already covers it
			}
			v = merged
		}
		data, err := json.Marshal(v)
		if err != nil {
			return nil, false, fmt.Errorf("edgepub: encode %s: %w", kind, err)
		}
		return data, false, nil
	})
}

// writeFact writes key with optimistic concurrency: value gives the bytes
// to write from the value held (found false before the first attempt and
// when there is none), or done when what is held already covers the write. The
// first write creates the key; each later one replaces the value read, at
// its revision, so concurrent writers cannot interleave. A conflict reads
// the key again and retries, maxWriteAttempts times at most. Errors from
// value are returned as they are.
func (p *Publisher) writeFact(ctx context.Context, kind, key string, value func(held []byte, found bool) (data []byte, done bool, err error)) error {
	if err := p.bucket.Raise(ctx); err != nil {
		return fmt.Errorf("edgepub: publish %s: %w", kind, err)
	}
	start := time.Now()
	var rev uint64
	data, done, err := value(nil, false)
	for attempt := 0; ; attempt++ {
		if err != nil {
			return err
		}
		if done {
			p.observe(kind, start, nil)
			return nil
		}
		if attempt == maxWriteAttempts {
			break
		}
		if rev == 0 {
			_, err = p.kv.Create(ctx, key, data)
		} else {
			_, err = p.kv.Update(ctx, key, data, rev)
		}
		if err == nil {
			p.observe(kind, start, nil)
			return nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) && !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			p.observe(kind, start, err)
			return fmt.Errorf("edgepub: publish %s: %w", kind, err)
		}
		e, gerr := p.kv.Get(ctx, key)
		switch {
		case errors.Is(gerr, jetstream.ErrKeyNotFound) || errors.Is(gerr, jetstream.ErrKeyDeleted):
			rev = 0
			data, done, err = value(nil, false)
		case gerr != nil:
			p.observe(kind, start, gerr)
			return fmt.Errorf("edgepub: publish %s: read the current fact: %w", kind, gerr)
		default:
			rev = e.Revision()
			data, done, err = value(e.Value(), true)
		}
	}
	err = fmt.Errorf("edgepub: publish %s: the fact kept changing under us; retry", kind)
	p.observe(kind, start, err)
	return err
}

func (p *Publisher) observe(kind string, start time.Time, err error) {
	if p.o.Observe != nil {
		p.o.Observe(kind, time.Since(start), err)
	}
}
