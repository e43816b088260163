// Package edgepub is the daemon's side of the edge state: it publishes facts
// (revocations, group overrides, public keys) to the edge KV bucket exactly as
// docs/contracts.md lays them out, follows that bucket into an
// edgestate.State for /verify, and collects the edges' heartbeats.
package edgepub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/edgepass/edgepass/daemon/kvbucket"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/edgepass/edgepass/daemon/session"
	"github.com/edgepass/edgepass/plugin/edgestate"
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
	MaxGroups = 1000
	// MaxGroupName is the longest group name kept.
	MaxGroupName = 256
	// MaxGroupBytes bounds the names of a whole list, so the fact carrying
	// it stays well inside the edge's value limit.
	MaxGroupBytes = 32 << 10
)

// Options configures the publisher.
type Options struct {
	// Bucket is the edge KV bucket (nats.edgeBucket); Replicas its JetStream replicas.
	Bucket   string
	Replicas int
	// Lifetime is the longest session lifetime: the bucket's max age, and how
	// long user revocations and group overrides stay in force.
	Lifetime time.Duration
	// Observe, if set, receives how long each publish took until JetStream
	// acknowledged it (for a latency histogram) and its error.
	Observe func(kind string, d time.Duration, err error)
	// Now is the clock (tests); default time.Now.
	Now func() time.Time
}

// TTLMargin keeps edge facts a little longer than a session can live, so an
// edge that replays the bucket still sees a revocation while a token it
// covers is inside the edges' clock-skew allowance.
const TTLMargin = 2 * time.Minute

// Publisher writes edge facts; every method returns after JetStream stored
// the fact, so a revocation reported as done reaches every edge that syncs.
type Publisher struct {
	kv jetstream.KeyValue
	o  Options
}

// OpenPublisher creates the edge bucket (max age = lifetime + TTLMargin, history 1, file
// storage) or updates its settings.
func OpenPublisher(ctx context.Context, js jetstream.JetStream, o Options) (*Publisher, error) {
	if o.Bucket == "" {
		return nil, errors.New("edgepub: bucket name required (nats.edgeBucket)")
	}
	if o.Lifetime <= 0 {
		return nil, errors.New("edgepub: lifetime must be positive (session.lifetime)")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	kv, err := kvbucket.Open(ctx, js, o.Bucket, "edgepass edge state: revocations, group overrides, public keys", o.Lifetime+TTLMargin, o.Replicas)
	if err != nil {
		return nil, fmt.Errorf("edgepub: %w", err)
	}
	return &Publisher{kv: kv, o: o}, nil
}

type sessionFact struct {
	Exp int64 `json:"exp"`
}

type userFact struct {
	Before int64 `json:"before"`
	Exp    int64 `json:"exp"`
}

type groupsFact struct {
	Groups []string `json:"groups"`
	At     int64    `json:"at"`
	Exp    int64    `json:"exp"`
	// Admin marks an administrator's override, which a new login keeps;
	// groups the IdP reported at refresh carry no mark (edges ignore it).
	Admin bool `json:"admin,omitempty"`
}

// RevokeSession makes every edge refuse tokens with this sid until exp (the
// session's expiry; a zero exp means "for a whole lifetime").
func (p *Publisher) RevokeSession(ctx context.Context, sid string, exp time.Time) error {
	if !session.ValidID(sid) {
		return fmt.Errorf("edgepub: revoke session: malformed session id")
	}
	if exp.IsZero() {
		exp = p.o.Now().Add(p.o.Lifetime)
	}
	return p.put(ctx, KindRevokeSession, edgestate.PrefixRevokeSession+sid, sessionFact{Exp: exp.Unix()})
}

// RevokeUser makes every edge refuse the subject's tokens issued at or
// before before; the fact lasts until those tokens have expired.
func (p *Publisher) RevokeUser(ctx context.Context, subject string, before time.Time) error {
	if subject == "" {
		return errors.New("edgepub: revoke user: empty subject")
	}
	if before.IsZero() {
		before = p.o.Now()
	}
	f := userFact{Before: before.Unix(), Exp: before.Add(p.o.Lifetime).Unix()}
	return p.put(ctx, KindRevokeUser, edgestate.PrefixRevokeUser+token.SubjectKey(subject), f)
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
	f := groupsFact{Groups: groups, At: now.Unix(), Exp: now.Add(p.o.Lifetime).Unix(), Admin: admin}
	return p.put(ctx, KindGroups, edgestate.PrefixGroups+token.SubjectKey(subject), f)
}

// GroupsOverride returns the groups an administrator set for the subject
// while they are still in force, so a new login carries them too.
func (p *Publisher) GroupsOverride(ctx context.Context, subject string) ([]string, bool, error) {
	e, err := p.kv.Get(ctx, edgestate.PrefixGroups+token.SubjectKey(subject))
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("edgepub: read groups: %w", err)
	}
	var f groupsFact
	if err := json.Unmarshal(e.Value(), &f); err != nil {
		return nil, false, fmt.Errorf("edgepub: read groups: %w", err)
	}
	if !f.Admin || (f.Exp > 0 && p.o.Now().Unix() > f.Exp) {
		return nil, false, nil
	}
	return f.Groups, true, nil
}

// ClearGroups removes the subject's group override (tokens keep their own groups).
func (p *Publisher) ClearGroups(ctx context.Context, subject string) error {
	start := time.Now()
	err := p.kv.Purge(ctx, edgestate.PrefixGroups+token.SubjectKey(subject))
	p.observe(KindGroups, start, err)
	if err != nil {
		return fmt.Errorf("edgepub: clear groups: %w", err)
	}
	return nil
}

// PublishKeys replaces the edges' verification keys; it implements keys.JWKSPublisher.
func (p *Publisher) PublishKeys(ctx context.Context, jwks []byte) error {
	if _, err := token.ParseJWKS(jwks); err != nil {
		return fmt.Errorf("edgepub: refusing to publish an unusable JWKS: %w", err)
	}
	start := time.Now()
	_, err := p.kv.Put(ctx, edgestate.KeyKeys, jwks)
	p.observe(KindKeys, start, err)
	if err != nil {
		return fmt.Errorf("edgepub: publish keys: %w", err)
	}
	return nil
}

func (p *Publisher) put(ctx context.Context, kind, key string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("edgepub: encode %s: %w", kind, err)
	}
	if len(data) > edgestate.MaxValueSize {
		return fmt.Errorf("edgepub: %s value of %d bytes exceeds the edge limit %d", kind, len(data), edgestate.MaxValueSize)
	}
	start := time.Now()
	_, err = p.kv.Put(ctx, key, data)
	p.observe(kind, start, err)
	if err != nil {
		return fmt.Errorf("edgepub: publish %s: %w", kind, err)
	}
	return nil
}

func (p *Publisher) observe(kind string, start time.Time, err error) {
	if p.o.Observe != nil {
		p.o.Observe(kind, time.Since(start), err)
	}
}
