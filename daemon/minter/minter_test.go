package minter

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"io"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/edgepass/edgepass/daemon/internal/natstest"
	"github.com/edgepass/edgepass/daemon/seal"
	"github.com/edgepass/edgepass/plugin/assertion"
	"github.com/edgepass/edgepass/plugin/edgestate"
	"github.com/edgepass/edgepass/plugin/mint"
	"github.com/edgepass/edgepass/plugin/natsedge"
	"github.com/edgepass/edgepass/plugin/token"
)

const (
	issuer = "https://auth.example.com"
	aud    = "https://billing.example.com"
)

type ringKeys struct{ ks *token.KeySet }

func (r ringKeys) PublicKeys() *token.KeySet { return r.ks }

type fixture struct {
	srv        *natstest.Server
	kv         jetstream.KeyValue
	seal       *seal.Key
	keys       *Keys
	m          *Minter
	state      *edgestate.State
	sessionKey ed25519.PrivateKey
	anchor     ed25519.PrivateKey
	clock      time.Time
}

func newFixture(t *testing.T, listen bool) *fixture {
	t.Helper()
	f := &fixture{clock: time.Now()}
	if listen {
		f.srv = natstest.StartListening(t)
	} else {
		f.srv = natstest.Start(t)
	}
	ctx := natstest.Context(t)
	kv, err := f.srv.JS.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "edgepass_keys"})
	if err != nil {
		t.Fatal(err)
	}
	f.kv = kv
	if f.seal, _, err = seal.Generate(); err != nil {
		t.Fatal(err)
	}
	if f.keys, err = OpenKeys(ctx, kv, f.seal, func() time.Time { return f.clock }); err != nil {
		t.Fatal(err)
	}
	_, f.sessionKey, _ = ed25519.GenerateKey(rand.Reader)
	_, f.anchor, _ = ed25519.GenerateKey(rand.Reader)
	f.state = edgestate.NewWithAnchors(token.NewKeySet(token.Key{ID: token.AnchorID(f.anchor.Public().(ed25519.PublicKey)), Public: f.anchor.Public().(ed25519.PublicKey)}))
	f.m, err = New(Options{
		Issuer: issuer, Tokens: ringKeys{token.NewKeySet(token.Key{ID: "s1", Public: f.sessionKey.Public().(ed25519.PublicKey)})},
		State: f.state, Keys: f.keys, Now: func() time.Time { return f.clock },
	})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fixture) claims() *token.Claims {
	return &token.Claims{Issuer: issuer, Audience: token.Audience{"edgepass"}, Subject: "sub-alice", SessionID: "session-of-alice-00000001",
		IssuedAt: f.clock.Unix() - 10, Expiry: f.clock.Unix() + 3600, PreferredUsername: "alice", Email: "alice@example.com", Groups: []string{"staff"}}
}

func (f *fixture) token(t *testing.T, c *token.Claims) string {
	t.Helper()
	raw, err := token.Sign(c, "s1", f.sessionKey)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// jwks is the merged JWKS the daemon serves.
func (f *fixture) jwks(t *testing.T) []byte {
	t.Helper()
	session, _ := token.NewKeySet(token.Key{ID: "s1", Public: f.sessionKey.Public().(ed25519.PublicKey)}).MarshalJWKS()
	rec := httptest.NewRecorder()
	JWKSHandler(func() []byte { return session }, f.keys).ServeHTTP(rec, httptest.NewRequest("GET", "/.well-known/jwks.json", nil))
	body, _ := io.ReadAll(rec.Body)
	return body
}

func (f *fixture) verify(t *testing.T, raw string) *assertion.Claims {
	t.Helper()
	keys, err := assertion.ParseJWKS(f.jwks(t))
	if err != nil {
		t.Fatal(err)
	}
	c, err := assertion.Verify(raw, keys, assertion.Options{Issuer: issuer, Audience: aud}, f.clock)
	if err != nil {
		t.Fatalf("assertion does not verify with the daemon's JWKS: %v", err)
	}
	return c
}

// The whole path as an edge runs it: the edge's NATS credential (exactly
// natsedge.EdgePermissions), the plugin's own NATS client, a sealed request
// on its assertion subject, the daemon's answer, a backend's verification.
func TestMintOverNATSWithEdgePermissions(t *testing.T) {
	f := newFixture(t, true)
	sub, err := f.m.Subscribe(f.srv.NC, natsedge.DefaultBucket)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	w, err := natsedge.Shared(natsedge.Config{URLs: []string{f.srv.ClientURL()}, User: natstest.EdgeUser, Password: f.srv.EdgePassword(), ReplicaID: "minter-test", Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	kid, pub := f.keys.MintKey()
	subject := natsedge.AssertionSubject(w.Bucket(), w.EdgeName())
	raw := f.token(t, f.claims())
	msg, rk, err := mint.SealRequest(mint.Request{Token: raw, Audience: aud, Iat: f.clock.Unix()}, kid, pub, subject)
	if err != nil {
		t.Fatal(err)
	}
	data, err := w.Request(subject, msg, 5*time.Second)
	if err != nil {
		t.Fatalf("request: %v", err)
	}
	rep, err := rk.Open(data)
	if err != nil || rep.Assertion == "" {
		t.Fatalf("reply: %v %+v", err, rep)
	}
	c := f.verify(t, rep.Assertion)
	if c.Subject != "sub-alice" || c.User != "alice" || c.Kind != assertion.KindSession || strings.Join(c.Groups, ",") != "staff" ||
		c.SessionHash != assertion.HashSessionID("session-of-alice-00000001") || c.Expiry-c.IssuedAt != assertion.DefaultLifetime {
		t.Fatalf("claims %+v", c)
	}
	// Attack: an edge credential asking on another edge's subject (to get
	// replies meant for it, or to be counted as it) is refused by NATS.
	other := natsedge.AssertionSubject(w.Bucket(), "other-edge")
	msg2, _, _ := mint.SealRequest(mint.Request{Token: raw, Audience: aud, Iat: f.clock.Unix()}, kid, pub, other)
	if _, err := w.Request(other, msg2, 2*time.Second); err == nil {
		t.Fatal("an edge published on another edge's assertion subject")
	}
	// The request connection comes back for the next request.
	msg3, rk3, _ := mint.SealRequest(mint.Request{Token: raw, Audience: aud, Iat: f.clock.Unix()}, kid, pub, subject)
	data, err = w.Request(subject, msg3, 5*time.Second)
	if err != nil {
		t.Fatalf("request after a refused one: %v", err)
	}
	if rep, err := rk3.Open(data); err != nil || rep.Assertion == "" {
		t.Fatalf("reply after a refused one: %v %+v", err, rep)
	}
}

// Attack: a logged-out session (or a disabled user) keeps asking for
// assertions through an edge that has not heard of the revocation.
func TestMintRefusesRevokedSessionAndUser(t *testing.T) {
	f := newFixture(t, false)
	c := f.claims()
	raw := f.token(t, c)
	if rep := f.m.Mint(raw, aud, f.clock); rep.Assertion == "" {
		t.Fatalf("live session refused: %+v", rep)
	}
	if err := f.state.Apply("revoke.session."+c.SessionID, "", []byte(`{"exp":`+strconv.FormatInt(c.Expiry, 10)+`}`), 1, f.clock); err != nil {
		t.Fatal(err)
	}
	if rep := f.m.Mint(raw, aud, f.clock); rep.Assertion != "" || rep.Reason != mint.ReasonSessionRevoked {
		t.Fatalf("revoked session: %+v", rep)
	}
	c2 := f.claims()
	c2.SessionID = "another-session-of-alice-1"
	raw2 := f.token(t, c2)
	if err := f.state.Apply("revoke.user."+token.SubjectKey(c2.Subject), "", []byte(`{"before":`+strconv.FormatInt(c2.IssuedAt, 10)+`}`), 2, f.clock); err != nil {
		t.Fatal(err)
	}
	if rep := f.m.Mint(raw2, aud, f.clock); rep.Reason != mint.ReasonUserRevoked {
		t.Fatalf("revoked user: %+v", rep)
	}
}

// Attack: minting an assertion with the session audience (it would be a
// session token to every verifier of the daemon's JWKS), or for nothing.
func TestMintRejectsSessionAudience(t *testing.T) {
	f := newFixture(t, false)
	raw := f.token(t, f.claims())
	for _, a := range []string{"edgepass", "edgepass-service", "", "a b", "x\ny", strings.Repeat("a", 300)} {
		if rep := f.m.Mint(raw, a, f.clock); rep.Assertion != "" || rep.Reason != mint.ReasonAudience {
			t.Errorf("audience %q: %+v", a, rep)
		}
	}
}

// Forged, expired, foreign-issuer or audience-less tokens get nothing.
func TestMintRejectsBadTokens(t *testing.T) {
	f := newFixture(t, false)
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	forged, _ := token.Sign(f.claims(), "s1", other)
	expired := f.claims()
	expired.Expiry = f.clock.Unix() - 60
	foreign := f.claims()
	foreign.Issuer = "https://evil.example"
	wrongAud := f.claims()
	wrongAud.Audience = token.Audience{aud} // a token for the backend itself
	noSid := f.claims()
	noSid.SessionID = ""
	for name, tc := range map[string]struct{ raw, want string }{
		"forged":    {forged, mint.ReasonBadToken},
		"expired":   {f.token(t, expired), mint.ReasonExpired},
		"issuer":    {f.token(t, foreign), mint.ReasonBadToken},
		"audience":  {f.token(t, wrongAud), mint.ReasonBadToken},
		"no sid":    {f.token(t, noSid), mint.ReasonBadToken},
		"garbage":   {"a.b.c", mint.ReasonBadToken},
		"alg none":  {"eyJhbGciOiJub25lIn0.e30.", mint.ReasonBadToken},
		"assertion": {mustAssertion(t, f), mint.ReasonBadToken},
	} {
		if rep := f.m.Mint(tc.raw, aud, f.clock); rep.Assertion != "" || rep.Reason != tc.want {
			t.Errorf("%s: %+v, want %s", name, rep, tc.want)
		}
	}
}

// mustAssertion is a genuine assertion: presented as a credential to mint
// another, it must be refused (assertions are not sessions).
func mustAssertion(t *testing.T, f *fixture) string {
	rep := f.m.Mint(f.token(t, f.claims()), aud, f.clock)
	if rep.Assertion == "" {
		t.Fatal(rep.Reason)
	}
	return rep.Assertion
}

func TestMintAppliesGroupOverrideAndServiceTokens(t *testing.T) {
	f := newFixture(t, false)
	c := f.claims()
	fact, err := edgestate.SignGroups(token.SubjectKey(c.Subject), edgestate.GroupsFact{Iat: 1, Groups: []string{"auditors"}, At: c.IssuedAt}, f.anchor)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.state.Apply("groups."+token.SubjectKey(c.Subject), "", fact, 1, f.clock); err != nil {
		t.Fatal(err)
	}
	rep := f.m.Mint(f.token(t, c), aud, f.clock)
	if got := strings.Join(f.verify(t, rep.Assertion).Groups, ","); got != "auditors" {
		t.Fatalf("groups %q, want the override", got)
	}
	svc := f.claims()
	svc.Audience = token.Audience{assertion.ServiceAudience}
	svc.Subject, svc.PreferredUsername, svc.Email = "service:billing-sync", "billing-sync", ""
	svc.Expiry = f.clock.Unix() + 20 // the assertion must not outlive the token
	rep = f.m.Mint(f.token(t, svc), aud, f.clock)
	a := f.verify(t, rep.Assertion)
	if a.Kind != assertion.KindService || a.Subject != "service:billing-sync" || a.Expiry != svc.Expiry {
		t.Fatalf("service assertion %+v", a)
	}
}

// The assertion keys rotate; the previous ones stay published and able to
// open requests; the session key set never takes them.
func TestMintKeysRotateApartFromSessionKeys(t *testing.T) {
	f := newFixture(t, false)
	kid1, pub1 := f.keys.MintKey()
	sign1 := f.keys.SigningKey()
	msg, _, _ := mint.SealRequest(mint.Request{Token: "x", Audience: aud, Iat: 1}, kid1, pub1, "s")
	f.clock = f.clock.Add(KeyRotation + time.Minute)
	changed, err := f.keys.Tick(natstest.Context(t))
	if err != nil || !changed {
		t.Fatalf("rotation: %v %v", changed, err)
	}
	kid2, _ := f.keys.MintKey()
	if kid2 == kid1 || f.keys.SigningKey().Equal(sign1) {
		t.Fatal("keys did not rotate")
	}
	if _, _, err := mint.OpenRequest(msg, f.keys.mintPrivate(kid1), kid1, "s"); err != nil {
		t.Fatalf("a request sealed to the previous mint key: %v", err)
	}
	if len(f.keys.PublicKeys()) != 2 {
		t.Fatalf("%d assertion keys published, want current and previous", len(f.keys.PublicKeys()))
	}
	// Another replica (a second Keys on the same bucket) sees the same keys.
	k2, err := OpenKeys(natstest.Context(t), f.kv, f.seal, func() time.Time { return f.clock })
	if err != nil {
		t.Fatal(err)
	}
	if id, _ := k2.MintKey(); id != kid2 || !k2.SigningKey().Equal(f.keys.SigningKey()) {
		t.Fatal("replicas disagree on the assertion keys")
	}
	// A replica with another encryption key cannot open them.
	wrong, _, _ := seal.Generate()
	var wk *seal.WrongKeyError
	if _, err := OpenKeys(natstest.Context(t), f.kv, wrong, func() time.Time { return f.clock }); !errors.As(err, &wk) {
		t.Fatalf("foreign encryption key: %v", err)
	}
	// The merged JWKS: session verifiers see only the session key.
	ks, err := token.ParseJWKS(f.jwks(t))
	if err != nil || ks.Len() != 1 {
		t.Fatalf("session keys from the merged JWKS: %v %d", err, ks.Len())
	}
	ak, err := assertion.ParseJWKS(f.jwks(t))
	if err != nil || ak.Len() != 2 {
		t.Fatalf("assertion keys from the merged JWKS: %v %d", err, ak.Len())
	}
}

type recordingPublisher struct{ got []edgestate.KeysFact }

func (r *recordingPublisher) PublishKeys(_ context.Context, f edgestate.KeysFact) error {
	r.got = append(r.got, f)
	return nil
}

func TestFactPublisherAddsMintKey(t *testing.T) {
	f := newFixture(t, false)
	rec := &recordingPublisher{}
	p := &FactPublisher{Inner: rec, Keys: f.keys}
	if err := p.PublishKeys(natstest.Context(t), edgestate.KeysFact{MaxTokenLifetime: 60}); err != nil {
		t.Fatal(err)
	}
	kid, pub := f.keys.MintKey()
	if len(rec.got) != 1 || rec.got[0].Mint == nil || rec.got[0].Mint.Kid != kid || rec.got[0].Mint.Key != b64(pub) {
		t.Fatalf("published %+v", rec.got)
	}
}

type fakeIdP struct{ c *token.Claims }

func (f fakeIdP) VerifyAccessToken(raw string, now time.Time) (*token.Claims, error) {
	if raw != "idp.access.token" {
		return nil, errors.New("not the IdP's")
	}
	return f.c, nil
}

// An IdP access token an edge admitted gets an assertion of kind idp, with
// the user's revocations applied like any other credential.
func TestMintForIdPAccessTokens(t *testing.T) {
	f := newFixture(t, false)
	c := &token.Claims{Issuer: "https://idp.example.com", Subject: "robot", IssuedAt: f.clock.Unix() - 5, Expiry: f.clock.Unix() + 300, Groups: []string{"robots"}}
	f.m.o.IdP = fakeIdP{c}
	// An IdP token is not a JWS the session verifier can parse.
	rep := f.m.Mint("idp.access.token", aud, f.clock)
	if rep.Assertion == "" {
		t.Fatalf("refused: %+v", rep)
	}
	a := f.verify(t, rep.Assertion)
	if a.Kind != assertion.KindIdP || a.Subject != "robot" || strings.Join(a.Groups, ",") != "robots" {
		t.Fatalf("claims %+v", a)
	}
	if err := f.state.Apply("revoke.user."+token.SubjectKey("robot"), "", []byte(`{"before":`+strconv.FormatInt(f.clock.Unix(), 10)+`}`), 3, f.clock); err != nil {
		t.Fatal(err)
	}
	if rep := f.m.Mint("idp.access.token", aud, f.clock); rep.Reason != mint.ReasonUserRevoked {
		t.Fatalf("revoked user: %+v", rep)
	}
}
