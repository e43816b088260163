package keys

import (
	"testing"
	"time"

	"github.com/edgepass/edgepass/daemon/edgepub"
	"github.com/edgepass/edgepass/daemon/internal/natstest"
	"github.com/edgepass/edgepass/daemon/session"
	"github.com/edgepass/edgepass/plugin/edgestate"
	"github.com/edgepass/edgepass/plugin/token"
)

// daemonKeys opens the ring and the edge publisher the way serve does.
func daemonKeys(t *testing.T, srv *natstest.Server, clk *clock, lifetime time.Duration) (*Ring, *edgepub.Publisher) {
	t.Helper()
	ctx := natstest.Context(t)
	r, err := Open(ctx, srv.JS, Options{Bucket: "keys", Lifetime: lifetime, ClockSkew: time.Minute, Issuer: issuer, Seal: testSeal, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	pub, err := edgepub.OpenPublisher(ctx, srv.JS, edgepub.Options{Bucket: "edge", Anchor: r.AnchorSigningKey(), Horizon: r, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(ctx, pub); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	return r, pub
}

func TestLifetimeCutNeverRevivesRevokedToken(t *testing.T) {
	// Attack: after session.lifetime is shortened, a stolen token issued under the longer lifetime must stay refused: the user revocation and the bucket holding it must not shrink to the new lifetime.
	srv := natstest.Start(t)
	ctx := natstest.Context(t)
	clk := &clock{now: time.Now().Truncate(time.Second)}
	t0 := clk.Now()

	r, pub := daemonKeys(t, srv, clk, 12*time.Hour)
	s := sess(clk)
	s.ExpiresAt = t0.Add(12 * time.Hour)
	stolen, err := r.Sign(s)
	if err != nil {
		t.Fatal(err)
	}
	clk.Add(time.Minute)
	if err := pub.RevokeUser(ctx, s.Subject, clk.Now()); err != nil {
		t.Fatal(err)
	}
	r.Close()

	// Restart every daemon with a 1h lifetime.
	srv = srv.Restart()
	clk.Add(time.Minute)
	r, pub = daemonKeys(t, srv, clk, time.Hour)
	if err := pub.RevokeUser(ctx, "bob", clk.Now()); err != nil {
		t.Fatal(err)
	}
	clk.Set(t0.Add(2 * time.Hour))
	if err := r.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	if err := pub.FitTTL(ctx); err != nil {
		t.Fatal(err)
	}

	kv, _ := srv.JS.KeyValue(ctx, "edge")
	status, _ := kv.Status(ctx)
	if want := 12*time.Hour + edgepub.TTLMargin; status.TTL() < want {
		t.Errorf("edge bucket max age %s after the cut, want at least %s (tokens of 12h are live)", status.TTL(), want)
	}
	for _, sub := range []string{s.Subject, "bob"} {
		e, err := kv.Get(ctx, edgestate.PrefixRevokeUser+token.SubjectKey(sub))
		if err != nil {
			t.Fatalf("revocation of %s gone: %v", sub, err)
		}
		st := edgestate.NewWithAnchors(nil)
		_ = st.Apply(e.Key(), "", e.Value(), e.Revision(), clk.Now())
		if !st.Revoked("", token.SubjectKey(sub), t0.Unix(), t0.Add(12*time.Hour)) {
			t.Errorf("revocation of %s (%s) ends before a 12h token issued at t0 expires", sub, e.Value())
		}
	}

	// A fresh edge replaying the bucket at t0+2h still refuses the stolen token, and still accepts a live 12h token of someone else.
	edge := edgestate.NewWithAnchors(r.AnchorKeys())
	w, err := kv.WatchAll(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	for e := range w.Updates() {
		if e == nil {
			break
		}
		if err := edge.Apply(e.Key(), "", e.Value(), e.Revision(), clk.Now()); err != nil {
			t.Fatalf("edge refused %s: %v", e.Key(), err)
		}
	}
	v := &token.Verifier{Issuer: issuer, Audience: Audience}
	c, err := v.Verify(stolen, edge.Keys(), clk.Now())
	if err != nil {
		t.Fatalf("the edge cannot verify a 12h token at all: %v", err)
	}
	if !edge.Revoked(c.SessionID, token.SubjectKey(c.Subject), c.IssuedAt, clk.Now()) {
		t.Error("the revoked user's 12h token is accepted again after the lifetime cut")
	}
	if edge.TooLong(c.IssuedAt, c.Expiry) {
		t.Error("a legitimate 12h token is refused as too long while 12h tokens are live")
	}
	carol := &session.Session{ID: session.NewID(), Subject: "carol", IssuedAt: t0, ExpiresAt: t0.Add(12 * time.Hour)}
	other, _ := r.Sign(carol)
	if c, err := v.Verify(other, edge.Keys(), clk.Now()); err != nil || edge.Revoked(c.SessionID, token.SubjectKey(c.Subject), c.IssuedAt, clk.Now()) {
		t.Errorf("carol's live token refused: %v", err)
	}
}
