package natsedge

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/edgepass/edgepass/plugin/token"
)

// DefaultBucket is the edge KV bucket the daemon writes.
const DefaultBucket = "edgepass_edge"

// Timing defaults.
const (
	// DefaultIdleHeartbeat is how often the server signals an idle consumer;
	// three missed heartbeats mean the consumer is gone and get recreated.
	// In a cluster the consumer (R1, in memory) may live on another node
	// than the one the edge is connected to: when that node dies the edge's
	// connection survives and only the missing heartbeats tell, so they are
	// frequent (a 3-node chaos test measured 10–15 s of serving revoked
	// tokens with 5 s heartbeats).
	DefaultIdleHeartbeat = time.Second
	// HeartbeatInterval is how often the edge reports its sync state.
	HeartbeatInterval = 5 * time.Second
	// DefaultCrossCheckInterval is how often the edge compares the stream's
	// last sequence with what its consumer delivered.
	DefaultCrossCheckInterval = 5 * time.Second

	defaultPort      = "4222"
	dialTimeout      = 2 * time.Second
	handshakeTimeout = 5 * time.Second
	writeTimeout     = 5 * time.Second
	// requestTimeout bounds a JetStream API request. A consumer create sent
	// while the cluster elects a new metadata leader is never answered:
	// a short timeout and quick retries cover the election.
	requestTimeout    = 1500 * time.Millisecond
	maxPingsOut       = 2
	backoffBase       = 100 * time.Millisecond
	backoffCap        = 5 * time.Second
	createBackoffCap  = time.Second
	inactiveThreshold = 30 * time.Second
	maxURLs           = 32
	maxLearned        = 32 // cluster peers taken from INFO connect_urls
)

// Config says how the edge reaches NATS. Every distinct Config gets one
// process-wide Watcher (see Shared).
//
// Authentication is one of: Token (or TokenFile), User with Password (or
// PasswordFile), NKeySeed (or NKeySeedFile), or CredsFile; a TLS client
// certificate (CertFile and KeyFile) may come with any of them. Secret files
// are read by Shared (a missing file is an error) and again at every
// connection attempt, so a rotated file is picked up on the next reconnect.
type Config struct {
	// URLs are NATS servers: nats://host:port, tls://host:port or host:port.
	// An entry may hold several comma-separated URLs. Credentials in a URL
	// (nats://user:pass@host or nats://token@host) are used when the fields
	// below are empty. The servers are tried in random order; cluster peers
	// the servers announce are added to the list.
	URLs []string
	// Bucket is the edge KV bucket (default "edgepass_edge").
	Bucket string
	// Token authenticates with a server auth token; TokenFile holds it.
	Token, TokenFile string
	// User and Password authenticate with a username and password;
	// PasswordFile holds the password.
	User, Password, PasswordFile string
	// NKeySeed is an NKey user seed ("SU..."); it signs the server nonce.
	// NKeySeedFile holds it.
	NKeySeed, NKeySeedFile string
	// CredsFile is a NATS .creds file (user JWT and NKey seed), for servers
	// in operator mode.
	CredsFile string
	// CertFile and KeyFile are a PEM TLS client certificate and its key.
	CertFile, KeyFile string
	// CAFile is a PEM bundle of CAs that sign the servers' certificates.
	// Setting it (or a client certificate, or tls:// URLs) makes TLS
	// mandatory.
	CAFile string
	// TLSServerName overrides the name checked in the server certificate.
	TLSServerName string
	// EdgeName names the edge's inbox, consumers and heartbeat subject
	// (default: User, else "edge"); it must match the credential's NATS
	// permissions (EdgePermissions).
	EdgeName string
	// ReplicaID names this edge in heartbeats (default: the hostname).
	ReplicaID string
	// Version is the plugin release the heartbeats report, so operators
	// see which plugin every Traefik replica runs.
	Version string
	// TrustAnchors are the daemon's trust-anchor public keys in text form
	// (token.ParseAnchors). Keys and groups facts not signed by one are
	// refused; with none, all of them are.
	TrustAnchors []string
	// InsecureSkipVerify disables certificate verification (testing only).
	InsecureSkipVerify bool
	// IdleHeartbeat is the consumer idle heartbeat (default 5s, minimum
	// 100ms); a consumer silent for three of them is recreated. Client
	// PINGs go out every four of them.
	IdleHeartbeat time.Duration
	// CrossCheckInterval is how often the edge compares the stream's last
	// sequence with what its consumer delivered (default 10s, minimum
	// 100ms); a consumer that delivers nothing while the stream moved on for
	// a whole interval is recreated.
	CrossCheckInterval time.Duration
	// Logf receives diagnostics (default: the standard logger). It never
	// receives secrets.
	Logf func(format string, args ...any)
}

// serverURL is one parsed server address.
type serverURL struct {
	host   string // host:port for dialing
	name   string // host name for TLS verification
	tls    bool   // tls:// scheme
	user   string // credentials from the URL
	pass   string
	token  string
	redact string // printable form without credentials
}

// settings is a validated Config with everything derived from it.
type settings struct {
	cfg        Config
	servers    []serverURL
	bucket     string
	stream     string // KV_<bucket>
	kvPrefix   string // $KV.<bucket>.
	replica    string
	version    string
	edge       string // the edge name: inbox, consumer names, heartbeat subject
	anchors    *token.KeySet
	tlsConfig  *tls.Config // nil unless TLS is wanted or offered
	wantTLS    bool
	hasAuth    bool // the Config (not a URL) carries credentials
	idleHB     time.Duration
	crossCheck time.Duration
	logf       func(format string, args ...any)
}

// normalize applies the defaults and splits comma-separated URL entries,
// so equal settings written differently share one watcher.
func normalize(cfg Config) Config {
	var urls []string
	for _, u := range cfg.URLs {
		for _, part := range strings.Split(u, ",") {
			if part = strings.TrimSpace(part); part != "" {
				urls = append(urls, part)
			}
		}
	}
	cfg.URLs = urls
	if cfg.Bucket == "" {
		cfg.Bucket = DefaultBucket
	}
	if cfg.IdleHeartbeat <= 0 {
		cfg.IdleHeartbeat = DefaultIdleHeartbeat
	}
	if cfg.CrossCheckInterval <= 0 {
		cfg.CrossCheckInterval = DefaultCrossCheckInterval
	}
	cfg.NKeySeed = strings.TrimSpace(cfg.NKeySeed)
	var anchors []string
	for _, a := range cfg.TrustAnchors {
		for _, part := range strings.Split(a, ",") {
			if part = strings.TrimSpace(part); part != "" {
				anchors = append(anchors, part)
			}
		}
	}
	sort.Strings(anchors)
	cfg.TrustAnchors = anchors
	return cfg
}

// validBucket reports whether name is a legal KV bucket name.
func validBucket(name string) bool { return plainName(name, 255) }

// parseServerURL accepts nats://, tls:// and bare host[:port].
func parseServerURL(raw string) (serverURL, error) {
	var s serverURL
	raw = strings.TrimSpace(raw)
	if !strings.Contains(raw, "://") {
		raw = "nats://" + raw
	}
	u, err := url.Parse(raw)
	if err != nil {
		return s, fmt.Errorf("natsedge: bad NATS URL: %v", redactURLError(err))
	}
	switch strings.ToLower(u.Scheme) {
	case "nats":
	case "tls":
		s.tls = true
	default:
		return s, fmt.Errorf("natsedge: NATS URL scheme %q is not supported; use nats:// or tls://", u.Scheme)
	}
	host := u.Hostname()
	if host == "" {
		return s, fmt.Errorf("natsedge: NATS URL %q has no host", u.Redacted())
	}
	port := u.Port()
	if port == "" {
		port = defaultPort
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return s, fmt.Errorf("natsedge: NATS URL %q has a bad port", u.Redacted())
	}
	if u.Path != "" && u.Path != "/" {
		return s, fmt.Errorf("natsedge: NATS URL %q must not have a path", u.Redacted())
	}
	s.host = net.JoinHostPort(host, port)
	s.name = host
	if u.User != nil {
		if p, ok := u.User.Password(); ok {
			s.user = u.User.Username()
			s.pass = p
		} else {
			s.token = u.User.Username()
		}
	}
	scheme := "nats"
	if s.tls {
		scheme = "tls"
	}
	s.redact = scheme + "://" + s.host
	return s, nil
}

// redactURLError keeps url.Parse errors from echoing credentials.
func redactURLError(err error) string {
	if ue, ok := err.(*url.Error); ok {
		return ue.Err.Error()
	}
	return "invalid URL"
}

// validate checks cfg and derives settings. It touches no network; it reads
// the secret, certificate and CA files.
func validate(cfg Config) (*settings, error) {
	cfg = normalize(cfg)
	s := &settings{cfg: cfg}
	for _, part := range cfg.URLs {
		u, err := parseServerURL(part)
		if err != nil {
			return nil, err
		}
		s.servers = append(s.servers, u)
	}
	if len(s.servers) == 0 {
		return nil, errors.New("natsedge: no NATS URL configured; set nats.urls")
	}
	if len(s.servers) > maxURLs {
		return nil, fmt.Errorf("natsedge: %d NATS URLs configured, at most %d are supported", len(s.servers), maxURLs)
	}
	s.bucket = cfg.Bucket
	if !validBucket(s.bucket) {
		return nil, fmt.Errorf("natsedge: bucket name %q is invalid; use letters, digits, '-' and '_'", s.bucket)
	}
	s.stream = streamName(s.bucket)
	s.kvPrefix = "$KV." + s.bucket + "."
	if err := checkAuthSettings(cfg); err != nil {
		return nil, err
	}
	s.hasAuth = cfg.Token != "" || cfg.TokenFile != "" || cfg.User != "" || cfg.NKeySeed != "" || cfg.NKeySeedFile != "" || cfg.CredsFile != ""
	// Read every secret once now, so a missing or bad file fails the
	// configuration instead of a background loop.
	if _, err := s.credentials(); err != nil {
		return nil, err
	}
	s.edge = cfg.EdgeName
	if s.edge == "" {
		s.edge = cfg.User
	}
	if s.edge == "" {
		s.edge = "edge"
	}
	if !ValidEdgeName(s.edge) {
		from := "nats.edgeName"
		if cfg.EdgeName == "" {
			from = "nats.user (nats.edgeName is unset)"
		}
		return nil, fmt.Errorf("natsedge: nats.edgeName: %q from %s is not a valid edge name: use 1 to 64 letters, digits, '-' and '_', the name in the edge's NATS permissions", clip(s.edge, 80), from)
	}
	if len(cfg.TrustAnchors) > 0 {
		ks, err := token.ParseAnchors(cfg.TrustAnchors)
		if err != nil {
			return nil, fmt.Errorf("natsedge: trustAnchors: %v", err)
		}
		s.anchors = ks
	}
	s.idleHB = cfg.IdleHeartbeat
	if s.idleHB < 100*time.Millisecond {
		return nil, errors.New("natsedge: idle heartbeat must be at least 100ms")
	}
	s.crossCheck = cfg.CrossCheckInterval
	if s.crossCheck < 100*time.Millisecond {
		return nil, errors.New("natsedge: cross-check interval must be at least 100ms")
	}
	s.version = cfg.Version
	s.replica = cfg.ReplicaID
	if s.replica == "" {
		h, err := os.Hostname()
		if err != nil || h == "" {
			h = "edge"
		}
		s.replica = h
	}
	s.wantTLS = cfg.CAFile != "" || cfg.CertFile != ""
	for i := 0; i < len(s.servers); i++ {
		if s.servers[i].tls {
			s.wantTLS = true
		}
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: cfg.InsecureSkipVerify}
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("natsedge: read nats.caFile: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("natsedge: nats.caFile %s holds no PEM certificate", cfg.CAFile)
		}
		tc.RootCAs = pool
	}
	if _, err := s.clientCert(); err != nil {
		return nil, err
	}
	s.tlsConfig = tc
	s.logf = cfg.Logf
	if s.logf == nil {
		s.logf = log.Printf
	}
	return s, nil
}

// checkAuthSettings refuses contradicting authentication settings.
func checkAuthSettings(cfg Config) error {
	pairs := [][3]string{
		{cfg.Token, cfg.TokenFile, "nats.token and nats.tokenFile"},
		{cfg.Password, cfg.PasswordFile, "nats.password and nats.passwordFile"},
		{cfg.NKeySeed, cfg.NKeySeedFile, "nats.nkeySeed and nats.nkeySeedFile"},
	}
	for i := 0; i < len(pairs); i++ {
		if pairs[i][0] != "" && pairs[i][1] != "" {
			return fmt.Errorf("natsedge: set only one of %s (the file form keeps the secret out of Traefik's API)", pairs[i][2])
		}
	}
	methods := 0
	if cfg.Token != "" || cfg.TokenFile != "" {
		methods++
	}
	if cfg.User != "" {
		methods++
	}
	if cfg.NKeySeed != "" || cfg.NKeySeedFile != "" {
		methods++
	}
	if cfg.CredsFile != "" {
		methods++
	}
	if methods > 1 {
		return errors.New("natsedge: set only one authentication method: nats.token(File), nats.user with nats.password(File), nats.nkeySeed(File) or nats.credsFile")
	}
	if (cfg.Password != "" || cfg.PasswordFile != "") && cfg.User == "" {
		return errors.New("natsedge: nats.password and nats.passwordFile need nats.user")
	}
	if (cfg.CertFile == "") != (cfg.KeyFile == "") {
		return errors.New("natsedge: set both nats.certFile and nats.keyFile for a TLS client certificate")
	}
	return nil
}

// credentials are what one connection attempt authenticates with.
type credentials struct {
	token, user, pass string
	nkey              *nkeyUser
	jwt               string
}

// maxSecretFile bounds a secret file: no credential is anywhere near it.
const maxSecretFile = 64 << 10

// readSecretFile reads a secret file named by setting, trimmed of
// surrounding white space. Errors name the setting and the path, never the
// content.
func readSecretFile(setting, path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("natsedge: %s: %v; it is read at start and at every reconnect", setting, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxSecretFile+1))
	if err != nil {
		return "", fmt.Errorf("natsedge: %s: read %s: %v", setting, path, err)
	}
	if len(b) > maxSecretFile {
		return "", fmt.Errorf("natsedge: %s: %s is larger than %d bytes; is it the right file?", setting, path, maxSecretFile)
	}
	v := strings.TrimSpace(string(b))
	if v == "" {
		return "", fmt.Errorf("natsedge: %s: %s is empty", setting, path)
	}
	return v, nil
}

// credentials returns the configured credentials, reading the secret files
// again (a rotated file takes effect at the next connection).
func (s *settings) credentials() (credentials, error) {
	cfg := s.cfg
	var c credentials
	var err error
	c.token = cfg.Token
	if cfg.TokenFile != "" {
		if c.token, err = readSecretFile("nats.tokenFile", cfg.TokenFile); err != nil {
			return c, err
		}
	}
	c.user, c.pass = cfg.User, cfg.Password
	if cfg.PasswordFile != "" {
		if c.pass, err = readSecretFile("nats.passwordFile", cfg.PasswordFile); err != nil {
			return c, err
		}
	}
	if cfg.NKeySeed != "" {
		if c.nkey, err = parseNKeySeed(cfg.NKeySeed); err != nil {
			return c, err
		}
	}
	if cfg.NKeySeedFile != "" {
		seed, err := readSecretFile("nats.nkeySeedFile", cfg.NKeySeedFile)
		if err != nil {
			return c, err
		}
		if c.nkey, err = parseNKeySeed(seedLine(seed)); err != nil {
			return c, fmt.Errorf("natsedge: nats.nkeySeedFile %s: %v", cfg.NKeySeedFile, err)
		}
	}
	if cfg.CredsFile != "" {
		data, err := readSecretFile("nats.credsFile", cfg.CredsFile)
		if err != nil {
			return c, err
		}
		jwt, seed, err := parseCreds([]byte(data))
		if err != nil {
			return c, fmt.Errorf("natsedge: nats.credsFile %s: %v", cfg.CredsFile, err)
		}
		c.jwt, c.nkey = jwt, seed
	}
	return c, nil
}

// seedLine picks the seed out of an .nk file that may carry comments: the
// first line starting with "SU", else the whole text.
func seedLine(text string) string {
	lines := strings.Split(text, "\n")
	for i := 0; i < len(lines); i++ {
		l := strings.TrimSpace(lines[i])
		if strings.HasPrefix(l, "SU") {
			return l
		}
	}
	return text
}

// clientCert loads the TLS client certificate, or nil without one. It is
// read again at every connection attempt (certificates are rotated).
func (s *settings) clientCert() (*tls.Certificate, error) {
	if s.cfg.CertFile == "" {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(s.cfg.CertFile, s.cfg.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("natsedge: nats.certFile/nats.keyFile: %v", err)
	}
	return &cert, nil
}

// auth returns the credentials for server u: the Config's, else the URL's.
func (s *settings) auth(u serverURL) (credentials, error) {
	if s.hasAuth {
		return s.credentials()
	}
	return credentials{token: u.token, user: u.user, pass: u.pass}, nil
}
