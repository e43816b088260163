// Package serve wires the daemon together for `edgepass serve`: NATS
// (embedded or external), the buckets, the key ring, the session store, the
// OIDC flow, /verify, the JWKS and status page on the public listener, and the
// admin API on its own listener, with a graceful shutdown.
package serve

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/edgepass/edgepass/daemon/admin"
	"github.com/edgepass/edgepass/daemon/config"
	"github.com/edgepass/edgepass/daemon/console"
	"github.com/edgepass/edgepass/daemon/edgepub"
	"github.com/edgepass/edgepass/daemon/events"
	"github.com/edgepass/edgepass/daemon/idpkeys"
	"github.com/edgepass/edgepass/daemon/keys"
	"github.com/edgepass/edgepass/daemon/minter"
	"github.com/edgepass/edgepass/daemon/natsserver"
	"github.com/edgepass/edgepass/daemon/oidcflow"
	"github.com/edgepass/edgepass/daemon/seal"
	"github.com/edgepass/edgepass/daemon/servicetoken"
	"github.com/edgepass/edgepass/daemon/session"
	"github.com/edgepass/edgepass/daemon/verify"
)

// Timeouts of the daemon's own lifecycle.
const (
	// StartTimeout bounds connecting to NATS and preparing the buckets.
	StartTimeout = time.Minute
	// ShutdownTimeout bounds draining HTTP requests and NATS on SIGTERM.
	ShutdownTimeout = 20 * time.Second
	// maintainInterval paces key rotation checks, the horizon, bucket max
	// ages and the sessions gauge.
	maintainInterval = 30 * time.Second
	// mintSkew tolerates clock differences on tokens presented for an
	// assertion (the edges' default clockSkew).
	mintSkew = 30 * time.Second
)

// Server is a running daemon: listeners open, NATS connected, nothing served
// until Serve.
type Server struct {
	cfg    *config.Configuration
	log    *slog.Logger
	nats   *natsserver.Conn
	pub    *edgepub.Publisher
	ring   *keys.Ring
	store  *session.Store
	watch  *edgepub.Follower
	beats  *edgepub.Heartbeats
	oidc   *oidcflow.Handler
	verify *verify.Handler
	admin  *admin.Handler
	probe  *jetStreamProbe

	// Identity assertions: their keys, the minter answering edges, its
	// subscription, and the keys-fact publisher that adds the mint key.
	mintKeys *minter.Keys
	minter   *minter.Minter
	mintSub  interface{ Unsubscribe() error }
	factPub  *minter.FactPublisher
	// idpKeys are the IdP's signing keys, published to the edges for
	// bearer access tokens.
	idpKeys *idpkeys.Fetcher
	// events is the audit trail; consoles the web console on the admin
	// listener and, with admin.console.public, the public one (nil: off).
	events                      *events.Log
	adminConsole, publicConsole *console.Handler

	metrics  *admin.Metrics
	sessions atomic.Int64

	public, adminSrv  *http.Server
	publicLn, adminLn net.Listener
	// publicH and adminH are the listeners' handlers: "starting" ones
	// while New waits for its dependencies, the real ones once built.
	publicH, adminH swapHandler
	starting        *startingState
	errc            chan error // a listener failed

	closeOnce sync.Once
}

// New builds the daemon from a validated configuration. It binds the
// listeners first and serves them at once — /healthz alive, /readyz "not
// ready" with the reason, everything else 503 — while it waits, with
// backoff, for NATS to be reachable and JetStream to take its buckets: a
// first install whose NATS is still starting does not crash-loop. On error
// everything already started is stopped again.
func New(ctx context.Context, cfg *config.Configuration, logger *slog.Logger) (_ *Server, err error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, log: logger, errc: make(chan error, 2), starting: &startingState{}}
	defer func() {
		if err != nil {
			s.shutdownHTTP(context.Background())
			s.close(context.Background())
		}
	}()
	s.metrics = admin.NewMetrics(func() int { return int(s.sessions.Load()) })
	s.metrics.InitSeries(admin.Labels{
		LoginFailures: oidcflow.LoginFailureReasons, Revocations: oidcflow.RevocationKinds,
		VerifyOutcomes: verify.Outcomes, RefreshOutcomes: oidcflow.RefreshOutcomes, GroupLimits: oidcflow.GroupLimits,
	})

	// Bind first: a busy port fails fast, before NATS starts.
	if s.publicLn, err = listen(cfg.Listen, "listen"); err != nil {
		return nil, err
	}
	if s.adminLn, err = listen(cfg.Admin.Listen, "admin.listen"); err != nil {
		return nil, err
	}
	s.starting.set("starting")
	s.publicH.set(s.starting.publicHandler())
	s.adminH.set(s.starting.adminHandler(s.metrics))
	s.public = newHTTPServer(&s.publicH, logger)
	s.adminSrv = newHTTPServer(&s.adminH, logger)
	go func() { s.errc <- serveHTTP(s.public, s.publicLn, "listen") }()
	go func() { s.errc <- serveHTTP(s.adminSrv, s.adminLn, "admin.listen") }()

	for attempt := 1; ; attempt++ {
		err = s.build(ctx)
		if err == nil {
			break
		}
		s.close(context.Background())
		s.closeOnce = sync.Once{}
		if !waitable(err) {
			return nil, err
		}
		wait := startBackoff(attempt)
		reason := fmt.Sprintf("waiting for NATS: %v", err)
		s.starting.set(reason)
		logger.Warn("dependencies not ready; retrying", "attempt", attempt, "retryIn", wait, "err", err)
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("serve: stopped while %s", reason)
		case err = <-s.errc:
			return nil, err
		case <-time.After(wait):
		}
	}
	s.publicH.set(s.publicMux())
	s.adminH.set(s.adminMux())
	return s, nil
}

// build connects to NATS and builds everything that needs it.
func (s *Server) build(parent context.Context) (err error) {
	cfg, logger := s.cfg, s.log
	ctx, cancel := context.WithTimeout(parent, StartTimeout)
	defer cancel()
	lifetime := time.Duration(cfg.Session.Lifetime)
	no := natsserver.FromConfig(cfg)
	no.Logger = logger
	if s.nats, err = natsserver.Open(ctx, no); err != nil {
		return err
	}
	if s.nats.Embedded() {
		logger.Info("embedded NATS with JetStream started (authentication required)", "dataDir", cfg.NATS.Embedded.DataDir, "clientURL", s.nats.ClientURL())
		for _, e := range s.nats.Credentials.Edges {
			msg := "edge NATS credential"
			if e.Created {
				msg = "edge NATS credential generated"
			}
			logger.Info(msg+": give Traefik's edgepass middleware nats.user and nats.passwordFile", "nats.user", e.Name, "nats.passwordFile", absPath(e.File))
		}
	} else {
		logger.Info("connected to NATS", "url", s.nats.NC.ConnectedUrlRedacted())
	}

	sealKey, created, err := seal.LoadOrCreate(cfg.Keys.EncryptionKeyFile)
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	if created {
		logger.Warn("generated the encryption key that seals signing keys and refresh tokens in NATS: back it up, and give every daemon replica this same file (keys.encryptionKeyFile)",
			"file", absPath(cfg.Keys.EncryptionKeyFile), "encryptionKey", sealKey.ID())
	} else {
		logger.Info("encryption key loaded", "file", absPath(cfg.Keys.EncryptionKeyFile), "encryptionKey", sealKey.ID())
	}
	// The ring first (it holds the trust anchor the publisher signs with and
	// the horizon every bucket is sized by); it publishes once the publisher
	// exists.
	if s.ring, err = keys.Open(ctx, s.nats.JS, keys.Options{
		Bucket: cfg.NATS.KeyBucket, Replicas: cfg.NATS.Replicas,
		Lifetime: lifetime, ClockSkew: time.Duration(cfg.Keys.ClockSkew),
		RotationInterval: time.Duration(cfg.Keys.RotationInterval),
		Issuer:           cfg.PublicURL, Seal: sealKey, Logger: logger,
		OnScheduledRotation: s.recordScheduledRotation,
	}); err != nil {
		return err
	}
	if s.pub, err = edgepub.OpenPublisher(ctx, s.nats.JS, edgepub.Options{
		Bucket: cfg.NATS.EdgeBucket, Replicas: cfg.NATS.Replicas,
		Anchor: s.ring.AnchorSigningKey(), Horizon: s.ring,
		Observe: func(_ string, d time.Duration, err error) {
			if err == nil {
				s.metrics.ObservePublish(d)
			}
		},
	}); err != nil {
		return err
	}
	// The assertion keys live beside the ring in the key bucket, never in it.
	keyKV, err := s.nats.JS.KeyValue(ctx, cfg.NATS.KeyBucket)
	if err != nil {
		return fmt.Errorf("serve: key bucket %s: %w", cfg.NATS.KeyBucket, err)
	}
	if s.mintKeys, err = minter.OpenKeys(ctx, keyKV, sealKey, nil); err != nil {
		return err
	}
	if s.idpKeys, err = idpkeys.New(idpkeys.Options{
		Issuer: cfg.OIDC.Issuer, GroupsClaim: cfg.OIDC.GroupsClaim, UserClaims: cfg.OIDC.UserClaims,
		GroupsInclude: cfg.OIDC.GroupsInclude, Skew: mintSkew, Logger: logger,
	}); err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	// Before the first keys fact, so it carries them; an IdP not
	// reachable yet is fetched again at the next maintenance tick.
	ictx, icancel := context.WithTimeout(ctx, 5*time.Second)
	if _, err := s.idpKeys.Refresh(ictx); err != nil {
		logger.Warn("IdP signing keys not fetched yet (edges refuse IdP access tokens until they are); retrying", "err", err)
	}
	icancel()
	s.factPub = &minter.FactPublisher{Inner: s.pub, Keys: s.mintKeys, IdP: s.idpKeys.Current}
	if err := s.ring.Start(ctx, s.factPub); err != nil {
		return err
	}
	if err := writeAnchorFile(cfg.DataDir, s.ring.Anchor()); err != nil {
		logger.Warn("cannot write the trust anchor file (edges still need trustAnchors; `edgepass keys anchor` prints it)", "err", err)
	} else {
		logger.Info("trust anchor written for edges and scripts", "file", absPath(AnchorFile(cfg.DataDir)))
	}
	if s.store, err = session.OpenStore(ctx, s.nats.JS, session.StoreOptions{
		Bucket: cfg.NATS.SessionBucket, Lifetime: lifetime, Horizon: s.ring, Replicas: cfg.NATS.Replicas, Seal: sealKey,
	}); err != nil {
		return err
	}
	if s.watch, err = edgepub.Follow(ctx, s.nats.JS, cfg.NATS.EdgeBucket, s.ring.AnchorKeys(), logger); err != nil {
		return err
	}
	select {
	case <-s.watch.Synced():
	case <-ctx.Done():
		return fmt.Errorf("serve: edge bucket %s did not replay: %w", cfg.NATS.EdgeBucket, ctx.Err())
	}
	if s.beats, err = edgepub.SubscribeHeartbeats(s.nats.NC, cfg.NATS.EdgeBucket, edgepub.HeartbeatOptions{
		LastSeq: s.watch.State().LastSeq, Logger: logger,
	}); err != nil {
		return err
	}
	s.metrics.WatchEdges(s.beats)
	if s.minter, err = minter.New(minter.Options{
		Issuer: cfg.PublicURL, Skew: mintSkew, Tokens: s.ring, State: s.watch.State(), Keys: s.mintKeys, IdP: s.idpKeys, Logger: logger,
	}); err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	if s.mintSub, err = s.minter.Subscribe(s.nats.NC, cfg.NATS.EdgeBucket); err != nil {
		return fmt.Errorf("serve: answer assertion requests: %w", err)
	}
	if s.events, err = openEvents(ctx, s.nats.JS, cfg, logger); err != nil {
		return err
	}

	if s.oidc, err = oidcflow.New(oidcflow.Options{
		PublicURL:    cfg.PublicURL,
		Issuer:       cfg.OIDC.Issuer,
		ClientID:     cfg.OIDC.ClientID,
		ClientSecret: cfg.OIDC.ClientSecret,
		Scopes:       cfg.OIDC.Scopes, GroupsClaims: cfg.OIDC.GroupsClaim, UserClaims: cfg.OIDC.UserClaims,
		RequiredGroups:  cfg.OIDC.RequiredGroups,
		GroupsInclude:   cfg.OIDC.GroupsInclude,
		Lifetime:        lifetime,
		CookieName:      cfg.Session.CookieName,
		CookieDomain:    cfg.Session.CookieDomain,
		CookieSecure:    cfg.Session.CookieSecure,
		AllowedDomains:  cfg.Session.AllowedDomains,
		DefaultRedirect: cfg.Session.DefaultRedirect,
		RefreshInterval: time.Duration(cfg.Session.RefreshInterval),
		Store:           s.store,
		Signer:          s.ring,
		Tokens:          s.ring,
		Edge:            s.pub,
		Groups:          s.pub,
		Seal:            sealKey,
		Metrics:         s.metrics,
		Logger:          logger,
		// Pending logins travel sealed in the browser with the ring's
		// rotated login-state key: any replica completes any callback.
		StateSeal:      s.ring.LoginStateSealer(),
		LoginRateLimit: cfg.Session.LoginRateLimit,
		LoginRateBurst: cfg.Session.LoginRateBurst,
		TrustedProxies: cfg.TrustedProxies,
		Events:         s.events,
	}); err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	if s.verify, err = verify.New(verify.Options{
		PublicURL: cfg.PublicURL, CookieName: cfg.Session.CookieName,
		Keys: s.ring, State: s.watch.State(),
		AllowedDomains: cfg.Session.AllowedDomains,
		Observe:        s.metrics.Verified,
		Logger:         logger,
	}); err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	if s.probe, err = newJetStreamProbe(ctx, s.nats.JS, cfg.NATS.SessionBucket, cfg.NATS.EdgeBucket); err != nil {
		return err
	}
	serviceTokens, err := servicetoken.New(servicetoken.Options{
		Issuer: cfg.PublicURL, Signer: s.ring, Store: s.store, MaxLifetime: s.ring.Horizon,
		Revoker: session.Revoker{Edge: s.pub, Store: s.store, Metrics: s.metrics},
	})
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	if s.admin, err = admin.New(admin.Options{
		Token: cfg.Admin.Token, Tokens: adminTokens(cfg), Audit: s.events, Events: s.events, Overrides: s.pub,
		Store: s.store, Edge: adminEdge{s.pub}, Keys: s.ring, ServiceTokens: serviceTokens,
		Edges:        s.beats,
		Checks:       readinessChecks(s.probe, s.oidc),
		CheckTimeout: readyTimeout, CheckCache: readyCache,
		Metrics: s.metrics, Logger: logger,
	}); err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	if err := s.buildConsoles(sealKey); err != nil {
		return err
	}

	return nil
}

// AnchorFile is where serve writes the trust anchor's public key (mode
// 0644, public): a local harness or an operator reads it without the admin token.
func AnchorFile(dataDir string) string { return filepath.Join(dataDir, "trust-anchor.pub") }

// writeAnchorFile replaces the anchor file atomically (write, then rename).
func writeAnchorFile(dataDir, anchor string) error {
	if anchor == "" {
		return errors.New("the key ring has no trust anchor")
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dataDir, ".trust-anchor-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	_, werr := tmp.WriteString(anchor + "\n")
	if werr == nil {
		werr = tmp.Chmod(0o644)
	}
	if cerr := tmp.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		return werr
	}
	return os.Rename(tmp.Name(), AnchorFile(dataDir))
}

func absPath(p string) string {
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}

// listen opens a listener, explaining a busy port or a foreign address in
// terms of the setting that named it.
func listen(addr, setting string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	switch {
	case err == nil:
		return ln, nil
	case errors.Is(err, syscall.EADDRINUSE):
		return nil, fmt.Errorf("%s %s: the port is already in use (another edgepass running?); stop that process or change --%s", setting, addr, setting)
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return nil, fmt.Errorf("%s %s: this machine has no such address; change --%s (e.g. 127.0.0.1:port, or :port for every interface)", setting, addr, setting)
	case errors.Is(err, syscall.EACCES):
		return nil, fmt.Errorf("%s %s: permission denied (ports below 1024 need privileges); change --%s", setting, addr, setting)
	}
	return nil, fmt.Errorf("%s %s: %w; check --%s", setting, addr, err, setting)
}

func newHTTPServer(h http.Handler, logger *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelDebug),
	}
}

func (s *Server) publicMux() http.Handler {
	mux := http.NewServeMux()
	s.oidc.Register(mux)
	mux.Handle("GET /verify", s.verify)
	mux.Handle("/.well-known/jwks.json", minter.JWKSHandler(s.ring.JWKS, s.mintKeys))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write([]byte(`{"status":"ok"}` + "\n"))
	})
	mux.HandleFunc("GET /{$}", s.statusPage)
	if s.publicConsole != nil {
		mux.Handle(console.Prefix, s.publicConsole)
	}
	return mux
}

// PublicAddr is the browser listener's address (useful with port 0).
func (s *Server) PublicAddr() string { return s.publicLn.Addr().String() }

// AdminAddr is the admin listener's address.
func (s *Server) AdminAddr() string { return s.adminLn.Addr().String() }

// NATSURL is the embedded server's client URL ("" when external).
func (s *Server) NATSURL() string { return s.nats.ClientURL() }

// Serve serves until ctx ends, then shuts down gracefully: stop accepting,
// finish requests in flight, stop background work, drain NATS, stop the
// embedded server. A listener failure also ends it.
func (s *Server) Serve(ctx context.Context) error {
	bg, stopBG := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { s.maintain(bg) })
	wg.Go(func() { s.oidc.RunRefresh(bg) })
	wg.Go(func() { s.countSessions(bg) })
	wg.Go(func() { s.admin.RunChecks(bg, readyInterval) })

	errc := s.errc
	s.log.Info("edgepass serving", "public", s.PublicAddr(), "admin", s.AdminAddr(), "publicURL", s.cfg.PublicURL, "signingKey", s.ring.KeyID())

	pingCtx, cancelPing := context.WithTimeout(ctx, 5*time.Second)
	if err := s.oidc.Ping(pingCtx); err != nil {
		s.log.Warn("IdP discovery not reachable yet; /readyz reports not ready until it is", "issuer", s.cfg.OIDC.Issuer, "err", err)
	}
	cancelPing()

	var runErr error
	select {
	case <-ctx.Done():
		s.log.Info("shutting down")
	case runErr = <-errc:
		s.log.Error("listener failed; shutting down", "err", runErr)
	}
	sctx, cancel := context.WithTimeout(context.Background(), ShutdownTimeout)
	defer cancel()
	errs := s.shutdownHTTP(sctx)
	stopBG()
	wg.Wait()
	if err := s.close(sctx); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(append([]error{runErr}, errs...)...)
}

// shutdownHTTP stops both listeners' servers, finishing requests in flight.
func (s *Server) shutdownHTTP(ctx context.Context) []error {
	var errs []error
	for _, srv := range []*http.Server{s.public, s.adminSrv} {
		if srv == nil {
			continue
		}
		if err := srv.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("serve: http shutdown: %w", err))
		}
	}
	return errs
}

func serveHTTP(srv *http.Server, ln net.Listener, setting string) error {
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %s %s: %w", setting, ln.Addr(), err)
	}
	return nil
}

func (s *Server) close(ctx context.Context) error {
	var err error
	s.closeOnce.Do(func() {
		if s.mintSub != nil {
			_ = s.mintSub.Unsubscribe()
		}
		if s.beats != nil {
			_ = s.beats.Close()
		}
		if s.watch != nil {
			s.watch.Close()
		}
		if s.ring != nil {
			s.ring.Close()
		}
		if s.probe != nil {
			pctx, cancel := context.WithTimeout(ctx, readyTimeout)
			s.probe.remove(pctx)
			cancel()
		}
		if s.nats != nil {
			err = s.nats.Close(ctx)
		}
		s.beats, s.watch, s.ring, s.probe, s.nats, s.mintSub = nil, nil, nil, nil, nil, nil
	})
	return err
}

// maintain runs the key ring's maintenance (rotation, horizon, republishing
// the keys fact), then fits the edge and session buckets' max age to the
// horizon (lowering it only once longer-lived tokens have all expired).
func (s *Server) maintain(ctx context.Context) {
	t := time.NewTicker(maintainInterval)
	defer t.Stop()
	snap := s.pub.NewSnapshotWriter(s.watch, edgepub.SnapshotOptions{Logger: s.log})
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := s.ring.Tick(ctx); err != nil && ctx.Err() == nil {
			s.log.Error("keys: maintenance", "err", err)
		}
		republish := false
		if changed, err := s.mintKeys.Tick(ctx); err != nil && ctx.Err() == nil {
			s.log.Error("assertion keys: maintenance", "err", err)
		} else if changed {
			republish = true // edges seal their requests to the new mint key
		}
		if s.idpKeys.Due() {
			if changed, err := s.idpKeys.Refresh(ctx); err != nil && ctx.Err() == nil {
				s.log.Warn("IdP signing keys: refresh failed; the edges keep the last ones published", "err", err)
			} else if changed {
				republish = true // a rotation at the IdP
			}
		}
		if republish {
			if err := s.factPub.PublishKeys(ctx, s.ring.KeysFact()); err != nil && ctx.Err() == nil {
				s.log.Error("keys fact: publish the new mint or IdP keys", "err", err)
			}
		}
		if err := s.pub.FitTTL(ctx); err != nil && ctx.Err() == nil {
			s.log.Error("edge bucket max age", "err", err)
		}
		if err := s.store.FitTTL(ctx); err != nil && ctx.Err() == nil {
			s.log.Error("session bucket max age", "err", err)
		}
		if _, err := snap.Tick(ctx); err != nil && ctx.Err() == nil {
			s.log.Error("edge snapshot", "err", err)
		}
	}
}

// countSessions refreshes the edgepass_sessions gauge.
func (s *Server) countSessions(ctx context.Context) {
	t := time.NewTicker(maintainInterval)
	defer t.Stop()
	for {
		lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		list, err := s.store.List(lctx, "")
		cancel()
		if err == nil {
			s.sessions.Store(int64(len(list)))
		} else if ctx.Err() == nil {
			s.log.Debug("count sessions", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// adminEdge marks groups set through the admin API as an administrator's
// override, which logins and refreshes keep; the rest passes through.
type adminEdge struct{ *edgepub.Publisher }

// SetGroups implements admin.EdgePublisher.
func (a adminEdge) SetGroups(ctx context.Context, subject string, groups []string) error {
	return a.Publisher.SetAdminGroups(ctx, subject, groups)
}
