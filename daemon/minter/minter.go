package minter

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/edgepass/edgepass/plugin/assertion"
	"github.com/edgepass/edgepass/plugin/edgestate"
	"github.com/edgepass/edgepass/plugin/mint"
	"github.com/edgepass/edgepass/plugin/natsedge"
	"github.com/edgepass/edgepass/plugin/policy"
	"github.com/edgepass/edgepass/plugin/token"
)

// TokenKeys are the session-signing public keys (*keys.Ring).
type TokenKeys interface {
	PublicKeys() *token.KeySet
}

// Options configure a Minter.
type Options struct {
	// Issuer is the daemon's publicURL: iss of its tokens and of assertions.
	Issuer string
	// Skew tolerates clock differences on the tokens presented.
	Skew time.Duration
	// Tokens verifies the session and service tokens edges present.
	Tokens TokenKeys
	// State is the daemon's own view of the edge bucket: revocations and
	// group overrides apply to minting exactly as at the edge.
	State *edgestate.State
	// Keys sign assertions and open requests.
	Keys *Keys
	// IdP verifies IdP access tokens presented by an edge (nil: refused).
	IdP IdPVerifier
	// Lifetime of an assertion (default assertion.DefaultLifetime seconds).
	Lifetime time.Duration
	Logger   *slog.Logger
	// Now is the clock (tests); default time.Now.
	Now func() time.Time
}

// IdPVerifier checks an IdP access token and returns the claims an
// assertion is made from (the edge's own mapping of the token).
type IdPVerifier interface {
	VerifyAccessToken(raw string, now time.Time) (*token.Claims, error)
}

// Minter mints assertions.
type Minter struct {
	o     Options
	allow *policy.Policy // admits everyone: only revocations and overrides apply

	reloadMu sync.Mutex
	reloadAt time.Time
}

// New checks the options.
func New(o Options) (*Minter, error) {
	if o.Issuer == "" || o.Tokens == nil || o.State == nil || o.Keys == nil {
		return nil, errors.New("minter: Issuer, Tokens, State and Keys are required")
	}
	if o.Lifetime <= 0 {
		o.Lifetime = assertion.DefaultLifetime * time.Second
	}
	if o.Lifetime > assertion.MaxLifetime*time.Second {
		o.Lifetime = assertion.MaxLifetime * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	allow, err := policy.Compile(policy.Rules{})
	if err != nil {
		return nil, err
	}
	return &Minter{o: o, allow: allow}, nil
}

// Mint verifies raw — a session token, a service token or an IdP access
// token — applies the edge state (revocations, too-long tokens, group
// overrides) and signs an assertion for audience; otherwise it says why not.
func (m *Minter) Mint(raw, audience string, now time.Time) mint.Reply {
	if audience == "" || len(audience) > assertion.MaxAudience || audience == assertion.SessionAudience || audience == assertion.ServiceAudience ||
		strings.ContainsAny(audience, " \t\r\n") || policy.Sanitize(audience) != audience {
		return mint.Reply{Reason: mint.ReasonAudience}
	}
	c, kind, reason := m.verify(raw, now)
	if reason != "" {
		return mint.Reply{Reason: reason}
	}
	subjectKey := token.SubjectKey(c.Subject)
	d := m.allow.Decide(c, subjectKey, m.o.State, now)
	switch d.Reason {
	case "":
	case policy.SessionRevoked:
		return mint.Reply{Reason: mint.ReasonSessionRevoked}
	case policy.UserRevoked:
		return mint.Reply{Reason: mint.ReasonUserRevoked}
	case policy.TooLong:
		return mint.Reply{Reason: mint.ReasonTooLong}
	default:
		return mint.Reply{Reason: mint.ReasonBadToken}
	}
	iat := now.Unix()
	exp := now.Add(m.o.Lifetime).Unix()
	if exp > c.Expiry {
		exp = c.Expiry // never outlives the credential
	}
	if exp <= iat {
		return mint.Reply{Reason: mint.ReasonExpired}
	}
	groups := d.Groups
	if groups == nil {
		groups = []string{}
	}
	a, err := assertion.Sign(&assertion.Claims{
		Issuer: m.o.Issuer, Audience: audience, Subject: c.Subject, User: c.User(), Email: c.Email, Name: c.Name,
		Groups: groups, IssuedAt: iat, Expiry: exp, SessionHash: assertion.HashSessionID(c.SessionID), Kind: kind,
	}, m.o.Keys.SigningKey())
	if err != nil {
		m.o.Logger.Warn("minter: cannot sign an assertion", "err", err)
		return mint.Reply{Reason: mint.ReasonUnavailable}
	}
	return mint.Reply{Assertion: a, Exp: exp}
}

// verify checks a presented credential: the daemon's session and service
// tokens by their audience, anything else as an IdP access token.
func (m *Minter) verify(raw string, now time.Time) (*token.Claims, string, string) {
	v := token.Verifier{Issuer: m.o.Issuer, Skew: m.o.Skew}
	c, err := v.Verify(raw, m.o.Tokens.PublicKeys(), now)
	if err == nil {
		switch {
		case c.SessionID == "":
			return nil, "", mint.ReasonBadToken
		case c.Audience.Contains(policy.DefaultAudience):
			return c, assertion.KindSession, ""
		case c.Audience.Contains(assertion.ServiceAudience):
			return c, assertion.KindService, ""
		}
		return nil, "", mint.ReasonBadToken
	}
	if errors.Is(err, token.ErrExpired) {
		return nil, "", mint.ReasonExpired
	}
	if m.o.IdP != nil && (errors.Is(err, token.ErrAlgorithm) || errors.Is(err, token.ErrUnknownKey) || errors.Is(err, token.ErrMalformed)) {
		ic, ierr := m.o.IdP.VerifyAccessToken(raw, now)
		if ierr == nil {
			return ic, assertion.KindIdP, ""
		}
		if errors.Is(ierr, token.ErrExpired) {
			return nil, "", mint.ReasonExpired
		}
	}
	return nil, "", mint.ReasonBadToken
}

// Subscribe answers the edges' requests on natsedge.AssertionWildcard(bucket)
// (a queue group: one replica answers each).
func (m *Minter) Subscribe(nc *nats.Conn, bucket string) (*nats.Subscription, error) {
	return nc.QueueSubscribe(natsedge.AssertionWildcard(bucket), "edgepass-minter", m.handle)
}

// reloadEvery bounds how often a request naming an unknown mint key makes
// the keys be read again (another replica rotated them).
const reloadEvery = time.Second

func (m *Minter) handle(msg *nats.Msg) {
	if msg.Reply == "" {
		return
	}
	edge := msg.Subject[strings.LastIndexByte(msg.Subject, '.')+1:]
	kid := mint.RequestKeyID(msg.Data)
	priv := m.o.Keys.mintPrivate(kid)
	if priv == nil && kid != "" {
		m.reloadMu.Lock()
		if time.Since(m.reloadAt) >= reloadEvery {
			m.reloadAt = time.Now()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			if _, err := m.o.Keys.Tick(ctx); err != nil {
				m.o.Logger.Warn("minter: reload keys", "err", err)
			}
			cancel()
		}
		m.reloadMu.Unlock()
		priv = m.o.Keys.mintPrivate(kid)
	}
	if priv == nil {
		// Unreadable, or sealed to a key no replica holds: an answer that
		// does not open ends the edge's wait at once.
		m.o.Logger.Debug("minter: request for an unknown mint key", "edge", edge, "kid", kid)
		_ = msg.Respond([]byte(`{}`))
		return
	}
	req, rk, err := mint.OpenRequest(msg.Data, priv, kid, msg.Subject)
	if err != nil {
		m.o.Logger.Debug("minter: request does not open", "edge", edge, "err", err)
		_ = msg.Respond([]byte(`{}`))
		return
	}
	now := m.o.Now()
	var rep mint.Reply
	if d := now.Unix() - req.Iat; d > mint.MaxAge || d < -mint.MaxAge {
		rep = mint.Reply{Reason: mint.ReasonUnavailable}
		m.o.Logger.Warn("minter: request too old or from the future (check the edge's clock)", "edge", edge, "skewSeconds", d)
	} else {
		rep = m.Mint(req.Token, req.Audience, now)
		if rep.Assertion == "" {
			m.o.Logger.Debug("minter: refused", "edge", edge, "reason", rep.Reason)
		}
	}
	out, err := rk.Seal(rep)
	if err != nil {
		return
	}
	_ = msg.Respond(out)
}

// JWKSHandler serves GET /.well-known/jwks.json: the session keys (from
// sessionJWKS) and the assertion keys, one set. Session verifiers skip the
// assertion keys by their kid prefix; assertion verifiers take only them.
func JWKSHandler(sessionJWKS func() []byte, keys *Keys) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Method != http.MethodGet && req.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusMethodNotAllowed)
			_, _ = w.Write([]byte(`{"error":"method not allowed"}` + "\n"))
			return
		}
		var set struct {
			Keys []json.RawMessage `json:"keys"`
		}
		_ = json.Unmarshal(sessionJWKS(), &set)
		for _, pub := range keys.PublicKeys() {
			set.Keys = append(set.Keys, assertion.JWK(pub))
		}
		if set.Keys == nil {
			set.Keys = []json.RawMessage{}
		}
		out, err := json.Marshal(set)
		if err != nil {
			http.Error(w, "internal error", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/jwk-set+json")
		w.Header().Set("Cache-Control", "public, max-age=60")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		_, _ = w.Write(out)
	})
}

// KeysPublisher is what the key ring publishes the keys fact through
// (*edgepub.Publisher).
type KeysPublisher interface {
	PublishKeys(ctx context.Context, f edgestate.KeysFact) error
}

// FactPublisher adds the mint key (and the IdP's keys, when set) to every
// keys fact the ring publishes: one signed fact, so edges take them with
// the same trust-anchor check and rollback protection as the session keys.
type FactPublisher struct {
	Inner KeysPublisher
	Keys  *Keys
	// IdP, when set, returns the IdP fact to carry (nil: none yet).
	IdP func() *edgestate.IdPKeys
}

// PublishKeys implements keys.KeysPublisher.
func (p *FactPublisher) PublishKeys(ctx context.Context, f edgestate.KeysFact) error {
	if p.Keys != nil {
		kid, pub := p.Keys.MintKey()
		f.Mint = &edgestate.MintKey{Kid: kid, Key: b64(pub)}
	}
	if p.IdP != nil {
		f.IdP = p.IdP()
	}
	return p.Inner.PublishKeys(ctx, f)
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }
