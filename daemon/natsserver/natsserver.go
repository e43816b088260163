// Package natsserver gives the daemon its NATS connection with JetStream:
// either an embedded nats-server (one process is a complete install) or a
// connection to an external cluster.
package natsserver

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/edgepass/edgepass/daemon/config"
	"github.com/edgepass/edgepass/plugin/natsedge"
)

// Options says how to get a NATS connection.
type Options struct {
	// Embedded runs nats-server in this process.
	Embedded bool
	// Listen is the embedded server's client address ("" = in-process only,
	// port 0 = a random port).
	Listen string
	// DataDir is the embedded server's JetStream storage directory.
	DataDir string
	// SyncAlways fsyncs every JetStream write (power-loss safety).
	SyncAlways bool
	// CredentialsDir holds the embedded server's credentials, generated on
	// first start (Credentials): the daemon's and one password per edge
	// (default DataDir/credentials).
	CredentialsDir string
	// Edges are the embedded server's edge users: each may only do what
	// natsedge.EdgePermissions(EdgeBucket, edge) lists. There is no
	// anonymous access on any address.
	Edges      []string
	EdgeBucket string

	// URLs, Token, User, Password, CredentialsFile and CAFile configure the
	// connection to an external server when Embedded is false.
	URLs                                           []string
	Token, User, Password, CredentialsFile, CAFile string

	// ConnectTimeout bounds the first connection (default 10s).
	ConnectTimeout time.Duration
	// Logger receives the embedded server's and the connection's events.
	Logger *slog.Logger
}

// FromConfig maps the nats settings onto Options.
func FromConfig(cfg *config.Configuration) Options {
	c := cfg.NATS
	return Options{
		CredentialsDir:  cfg.CredentialsDir(),
		Embedded:        c.Embedded.Enabled,
		Listen:          c.Embedded.Listen,
		DataDir:         c.Embedded.DataDir,
		SyncAlways:      c.Embedded.SyncAlways,
		Edges:           c.Embedded.Edges,
		EdgeBucket:      c.EdgeBucket,
		URLs:            c.URLs,
		Token:           c.Token,
		User:            c.User,
		Password:        c.Password,
		CredentialsFile: c.CredentialsFile,
		CAFile:          c.CAFile,
	}
}

// Conn is the daemon's NATS connection, its JetStream context and, when
// embedded, the server it runs.
type Conn struct {
	NC *nats.Conn
	JS jetstream.JetStream
	// Credentials are the embedded server's users (nil when external).
	Credentials *Credentials
	server      *server.Server
	lock        *os.File // the embedded server's data directory lock
	closed      chan struct{}
}

// clientName is the daemon's connection name, as the NATS server shows it.
const clientName = "edgepass-daemon"

// Open starts the embedded server or connects to the external one, and
// checks that JetStream answers.
func Open(ctx context.Context, o Options) (*Conn, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.ConnectTimeout <= 0 {
		o.ConnectTimeout = 10 * time.Second
	}
	c := &Conn{closed: make(chan struct{})}
	common := []nats.Option{
		nats.Name(clientName),
		// A private inbox prefix: an edge allowed to subscribe to _INBOX.>
		// must not see replies to the daemon (sessions, keys).
		nats.CustomInboxPrefix(DaemonInboxPrefix),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(time.Second),
		nats.Timeout(o.ConnectTimeout),
		nats.ClosedHandler(func(*nats.Conn) { close(c.closed) }),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				o.Logger.Warn("nats: disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			o.Logger.Info("nats: reconnected", "url", nc.ConnectedUrlRedacted())
		}),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			o.Logger.Warn("nats: async error", "err", err)
		}),
	}

	if o.Embedded {
		if o.DataDir == "" {
			return nil, errors.New("nats: embedded server needs a data directory; set nats.embedded.dataDir")
		}
		if o.CredentialsDir == "" {
			o.CredentialsDir = filepath.Join(o.DataDir, "credentials")
		}
		creds, err := LoadCredentials(o.CredentialsDir, o.Edges)
		if err != nil {
			return nil, err
		}
		c.Credentials = creds
		common = append(common, nats.UserInfo(DaemonUser, creds.Daemon))
		s, lock, err := startEmbedded(o, creds)
		if err != nil {
			return nil, err
		}
		c.server, c.lock = s, lock
		nc, err := nats.Connect("", append(common, nats.InProcessServer(s))...)
		if err != nil {
			c.stopServer()
			return nil, fmt.Errorf("nats: connect to embedded server: %w", err)
		}
		c.NC = nc
	} else {
		opts, err := externalOptions(o)
		if err != nil {
			return nil, err
		}
		nc, err := nats.Connect(strings.Join(o.URLs, ","), append(common, opts...)...)
		if err != nil {
			return nil, fmt.Errorf("nats: cannot connect to %s: %w; check nats.urls and the credentials", strings.Join(o.URLs, ","), err)
		}
		c.NC = nc
	}

	js, err := jetstream.New(c.NC)
	if err != nil {
		c.shutdown()
		return nil, fmt.Errorf("nats: jetstream: %w", err)
	}
	c.JS = js
	actx, cancel := context.WithTimeout(ctx, o.ConnectTimeout)
	defer cancel()
	if _, err := js.AccountInfo(actx); err != nil {
		c.shutdown()
		if errors.Is(err, jetstream.ErrJetStreamNotEnabled) || errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount) {
			return nil, fmt.Errorf("nats: JetStream is not enabled on %s: %w; start nats-server with -js (or enable JetStream for this account)", c.NC.ConnectedUrlRedacted(), err)
		}
		return nil, fmt.Errorf("nats: JetStream does not answer: %w", err)
	}
	return c, nil
}

// DaemonUser is the embedded server's user for the daemon itself;
// DaemonInboxPrefix is where the daemon receives replies.
const (
	DaemonUser        = config.DaemonNATSUser
	DaemonInboxPrefix = "_EDGEPASS_DAEMON"
)

// EdgePermissions is what the edge named edge may do on the embedded server:
// exactly natsedge.EdgePermissions (its own inbox, its own consumers on the
// edge bucket's stream, its own heartbeat subject). It cannot read the
// session or key buckets, write facts, or see another edge's or the daemon's
// traffic.
func EdgePermissions(bucket, edge string) *server.Permissions {
	pub, sub := natsedge.EdgePermissions(bucket, edge)
	return &server.Permissions{
		Publish:   &server.SubjectPermission{Allow: pub},
		Subscribe: &server.SubjectPermission{Allow: sub},
	}
}

// startEmbedded locks the data directory and starts the server on it.
func startEmbedded(o Options, creds *Credentials) (*server.Server, *os.File, error) {
	if o.DataDir == "" {
		return nil, nil, errors.New("nats: embedded server needs a data directory; set nats.embedded.dataDir")
	}
	dir, err := filepath.Abs(o.DataDir)
	if err != nil {
		return nil, nil, fmt.Errorf("nats: data directory %s: %w", o.DataDir, err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("nats: create data directory: %w; check nats.embedded.dataDir", err)
	}
	lock, err := lockDataDir(dir)
	if err != nil {
		return nil, nil, err
	}
	s, err := runEmbedded(o, creds, dir)
	if err != nil {
		if lock != nil {
			lock.Close()
		}
		return nil, nil, err
	}
	return s, lock, nil
}

func runEmbedded(o Options, creds *Credentials, dir string) (*server.Server, error) {
	opts := &server.Options{
		ServerName:         "edgepass",
		JetStream:          true,
		StoreDir:           dir,
		SyncAlways:         o.SyncAlways,
		NoSigs:             true,
		DontListen:         o.Listen == "",
		JetStreamMaxMemory: -1,
		JetStreamMaxStore:  -1,
	}
	if o.EdgeBucket == "" && len(creds.Edges) > 0 {
		return nil, errors.New("nats: embedded edge users need the edge bucket name (nats.edgeBucket)")
	}
	// Every client authenticates: with Users set and no NoAuthUser, the
	// server refuses anonymous connections on every address.
	opts.Users = []*server.User{{Username: DaemonUser, Password: creds.Daemon}}
	for _, e := range creds.Edges {
		opts.Users = append(opts.Users, &server.User{Username: e.Name, Password: e.Password, Permissions: EdgePermissions(o.EdgeBucket, e.Name)})
	}
	if o.Listen != "" {
		host, portStr, err := net.SplitHostPort(o.Listen)
		if err != nil {
			return nil, fmt.Errorf("nats: embedded listen %q: %w; check nats.embedded.listen", o.Listen, err)
		}
		port, err := strconv.Atoi(portStr)
		if err != nil || port < 0 || port > 65535 {
			return nil, fmt.Errorf("nats: embedded listen %q: bad port; check nats.embedded.listen", o.Listen)
		}
		if port == 0 {
			port = server.RANDOM_PORT
		}
		if host == "" {
			host = "0.0.0.0"
		}
		opts.Host, opts.Port = host, port
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("nats: embedded server: %w", err)
	}
	logger := serverLogger{l: o.Logger, fatal: make(chan string, 1)}
	s.SetLoggerV2(logger, false, false, false)
	s.Start()
	deadline := time.Now().Add(30 * time.Second)
	for !s.ReadyForConnections(100 * time.Millisecond) {
		select {
		case msg := <-logger.fatal:
			s.Shutdown()
			return nil, fmt.Errorf("nats: embedded server: %s; check nats.embedded.listen and nats.embedded.dataDir", msg)
		default:
		}
		if time.Now().After(deadline) {
			s.Shutdown()
			return nil, fmt.Errorf("nats: embedded server not ready after 30s; check nats.embedded.listen (%s) and nats.embedded.dataDir (%s)", o.Listen, dir)
		}
	}
	if !s.JetStreamEnabled() {
		s.Shutdown()
		return nil, fmt.Errorf("nats: embedded JetStream did not start in %s; check permissions of nats.embedded.dataDir", dir)
	}
	return s, nil
}

func externalOptions(o Options) ([]nats.Option, error) {
	if len(o.URLs) == 0 {
		return nil, errors.New("nats: no server URL; set nats.urls or enable nats.embedded")
	}
	var opts []nats.Option
	switch {
	case o.Token != "":
		opts = append(opts, nats.Token(o.Token))
	case o.CredentialsFile != "":
		if _, err := os.Stat(o.CredentialsFile); err != nil {
			return nil, fmt.Errorf("nats: credentials file: %w; check nats.credentialsFile", err)
		}
		opts = append(opts, nats.UserCredentials(o.CredentialsFile))
	case o.User != "":
		opts = append(opts, nats.UserInfo(o.User, o.Password))
	}
	if o.CAFile != "" {
		pem, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("nats: CA file: %w; check nats.caFile", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("nats: CA file %s holds no PEM certificate; check nats.caFile", o.CAFile)
		}
		opts = append(opts, nats.Secure(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}))
	}
	return opts, nil
}

// ClientURL is where edges connect to the embedded server ("" when external
// or in-process only).
func (c *Conn) ClientURL() string {
	if c.server == nil || c.server.Addr() == nil {
		return ""
	}
	return c.server.ClientURL()
}

// Embedded reports whether the daemon runs its own server.
func (c *Conn) Embedded() bool { return c.server != nil }

// Ping is the /readyz check: the connection is up and the server answers.
func (c *Conn) Ping(ctx context.Context) error {
	if c.NC == nil || !c.NC.IsConnected() {
		return errors.New("nats: not connected")
	}
	if err := c.NC.FlushWithContext(ctx); err != nil {
		return fmt.Errorf("nats: server does not answer: %w", err)
	}
	return nil
}

// Close drains the connection (pending publishes and acks finish) and then
// stops the embedded server, which flushes JetStream to disk.
func (c *Conn) Close(ctx context.Context) error {
	var err error
	if c.NC != nil && !c.NC.IsClosed() {
		if derr := c.NC.Drain(); derr != nil {
			c.NC.Close()
		}
		select {
		case <-c.closed:
		case <-ctx.Done():
			c.NC.Close()
			err = fmt.Errorf("nats: drain: %w", ctx.Err())
		}
	}
	c.stopServer()
	return err
}

func (c *Conn) shutdown() {
	if c.NC != nil {
		c.NC.Close()
	}
	c.stopServer()
}

// stopServer stops the embedded server (JetStream flushed) and then
// releases its data directory.
func (c *Conn) stopServer() {
	if c.server != nil {
		c.server.Shutdown()
		c.server.WaitForShutdown()
	}
	if c.lock != nil {
		c.lock.Close()
		c.lock = nil
	}
}

// serverLogger forwards the embedded server's log lines to slog.
type serverLogger struct {
	l     *slog.Logger
	fatal chan string // the first fatal error, reported by Open
}

func (s serverLogger) Noticef(f string, v ...any) { s.l.Debug("nats-server: " + fmt.Sprintf(f, v...)) }
func (s serverLogger) Warnf(f string, v ...any)   { s.l.Warn("nats-server: " + fmt.Sprintf(f, v...)) }
func (s serverLogger) Fatalf(f string, v ...any) {
	msg := fmt.Sprintf(f, v...)
	s.l.Error("nats-server: " + msg)
	select {
	case s.fatal <- msg:
	default:
	}
}
func (s serverLogger) Errorf(f string, v ...any) { s.l.Error("nats-server: " + fmt.Sprintf(f, v...)) }
func (s serverLogger) Debugf(f string, v ...any) { s.l.Debug("nats-server: " + fmt.Sprintf(f, v...)) }
func (s serverLogger) Tracef(f string, v ...any) { s.l.Debug("nats-server: " + fmt.Sprintf(f, v...)) }
