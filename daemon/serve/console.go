package serve

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/edgepass/edgepass/daemon/admin"
	"github.com/edgepass/edgepass/daemon/config"
	"github.com/edgepass/edgepass/daemon/console"
	"github.com/edgepass/edgepass/daemon/events"
	"github.com/edgepass/edgepass/daemon/seal"
	"github.com/edgepass/edgepass/plugin/edgestate"
	"github.com/edgepass/edgepass/plugin/token"
)

// openEvents opens the audit trail's stream (events.*), writing each event
// this replica records to stdout too with events.stdout.
func openEvents(ctx context.Context, js jetstream.JetStream, cfg *config.Configuration, logger *slog.Logger) (*events.Log, error) {
	o := events.Options{
		Stream: cfg.Events.Stream, MaxAge: time.Duration(cfg.Events.MaxAge), MaxBytes: cfg.Events.MaxBytes,
		Replicas: cfg.NATS.Replicas, Logger: logger,
	}
	if cfg.Events.Stdout {
		o.Stdout = os.Stdout
	}
	l, err := events.Open(ctx, js, o)
	if err != nil {
		return nil, fmt.Errorf("serve: %w", err)
	}
	return l, nil
}

// adminTokens are admin.tokens as the admin API takes them.
func adminTokens(cfg *config.Configuration) []admin.Token {
	out := make([]admin.Token, 0, len(cfg.Admin.Tokens))
	for _, t := range cfg.Admin.Tokens {
		out = append(out, admin.Token{Name: t.Name, Secret: t.Secret(), ReadOnly: t.ReadOnly})
	}
	return out
}

// recordScheduledRotation puts a key rotated by keys.rotationInterval into
// the audit trail, with the daemon as the actor.
func (s *Server) recordScheduledRotation(ctx context.Context, kid string) {
	if s.events != nil {
		s.events.Record(ctx, events.Event{Kind: events.KindKeyRotated, Source: events.SourceSchedule, KeyID: kid,
			Detail: "keys.rotationInterval " + time.Duration(s.cfg.Keys.RotationInterval).String()})
	}
}

// buildConsoles builds the web console for the admin listener and, with
// admin.console.public, for the browser listener.
func (s *Server) buildConsoles(sealKey *seal.Key) error {
	c := s.cfg.Admin.Console
	if !c.Enabled {
		return nil
	}
	build := func(base string) (*console.Handler, error) {
		h, err := console.New(console.Options{
			BaseURL: base, Groups: c.Groups, SessionLifetime: time.Duration(c.SessionLifetime),
			SignIn: s.oidc, API: s.admin.Internal(), Seal: sealKey,
			Standing: edgeStanding{s.watch.State()}, Overrides: s.pub, IdP: s.cfg.OIDC.Issuer, Audit: s.events, Logger: s.log,
		})
		if err != nil {
			return nil, fmt.Errorf("serve: %w", err)
		}
		s.log.Info("admin console enabled: register its redirect URI at the IdP", "console", base+console.Prefix, "redirectURI", base+console.CallbackPath)
		return h, nil
	}
	var err error
	if s.adminConsole, err = build(c.URL); err != nil {
		return err
	}
	if c.Public {
		if s.publicConsole, err = build(s.cfg.PublicURL); err != nil {
			return err
		}
	}
	return nil
}

// adminMux is the admin listener: the console under /console/ when it is
// on, the admin API and health endpoints everywhere else.
func (s *Server) adminMux() http.Handler {
	if s.adminConsole == nil {
		return s.admin
	}
	mux := http.NewServeMux()
	mux.Handle(console.Prefix, s.adminConsole)
	mux.Handle("/", s.admin)
	return mux
}

// edgeStanding answers the console from the daemon's own copy of the edge
// state: what every edge decides on.
type edgeStanding struct{ st *edgestate.State }

// Standing implements console.Standing.
func (e edgeStanding) Standing(sub string, iat time.Time) (bool, []string, bool) {
	sk := token.SubjectKey(sub)
	revoked := e.st.UserRevoked(sk, iat.Unix(), time.Now())
	groups, over := e.st.GroupsOverride(sk, iat.Unix())
	return revoked, groups, over
}
