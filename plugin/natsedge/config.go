package natsedge

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// DefaultBucket is the edge KV bucket the daemon writes.
const DefaultBucket = "edgepass_edge"

// Timing defaults.
const (
	// DefaultIdleHeartbeat is how often the server signals an idle consumer;
	// three missed heartbeats mean the consumer is gone and get recreated.
	DefaultIdleHeartbeat = 5 * time.Second
	// HeartbeatInterval is how often the edge reports its sync state.
	HeartbeatInterval = 5 * time.Second

	defaultPort       = "4222"
	dialTimeout       = 5 * time.Second
	handshakeTimeout  = 5 * time.Second
	writeTimeout      = 5 * time.Second
	requestTimeout    = 5 * time.Second
	maxPingsOut       = 2
	backoffBase       = 100 * time.Millisecond
	backoffCap        = 5 * time.Second
	createBackoffCap  = 5 * time.Second
	inactiveThreshold = 30 * time.Second
	maxURLs           = 32
)

// Config says how the edge reaches NATS. Every distinct Config gets one
// process-wide Watcher (see Shared).
type Config struct {
	// URLs are NATS servers: nats://host:port, tls://host:port or host:port.
	// An entry may hold several comma-separated URLs. Credentials in a URL
	// (nats://user:pass@host or nats://token@host) are used when the fields
	// below are empty.
	URLs []string
	// Bucket is the edge KV bucket (default "edgepass_edge").
	Bucket string
	// Token authenticates with a server auth token.
	Token string
	// User and Password authenticate with a username and password.
	User, Password string
	// NKeySeed is an NKey user seed ("SU..."); it signs the server nonce.
	NKeySeed string
	// CAFile is a PEM bundle of CAs that sign the servers' certificates.
	// Setting it (or using tls:// URLs) makes TLS mandatory.
	CAFile string
	// TLSServerName overrides the name checked in the server certificate.
	TLSServerName string
	// ReplicaID names this edge in heartbeats (default: the hostname).
	ReplicaID string
	// InsecureSkipVerify disables certificate verification (testing only).
	InsecureSkipVerify bool
	// IdleHeartbeat is the consumer idle heartbeat (default 5s, minimum
	// 100ms); a consumer silent for three of them is recreated. Client
	// PINGs go out every four of them.
	IdleHeartbeat time.Duration
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
	cfg       Config
	servers   []serverURL
	bucket    string
	stream    string // KV_<bucket>
	kvPrefix  string // $KV.<bucket>.
	replica   string
	tlsConfig *tls.Config // nil unless TLS is wanted or offered
	wantTLS   bool
	nkey      *nkeyUser
	idleHB    time.Duration
	logf      func(format string, args ...any)
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
	cfg.NKeySeed = strings.TrimSpace(cfg.NKeySeed)
	return cfg
}

// canonicalKey identifies a Config for process-wide sharing.
func canonicalKey(cfg Config) string {
	cfg = normalize(cfg)
	fields := []string{
		strings.Join(cfg.URLs, ","), cfg.Bucket, cfg.Token, cfg.User, cfg.Password,
		cfg.NKeySeed, cfg.CAFile, cfg.TLSServerName, cfg.ReplicaID,
		strconv.FormatBool(cfg.InsecureSkipVerify), cfg.IdleHeartbeat.String(),
	}
	var b strings.Builder
	for i := 0; i < len(fields); i++ {
		b.WriteString(strconv.Itoa(len(fields[i])))
		b.WriteByte(':')
		b.WriteString(fields[i])
		b.WriteByte(';')
	}
	return b.String()
}

// validBucket reports whether name is a legal KV bucket name.
func validBucket(name string) bool {
	if name == "" || len(name) > 255 {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
		if !ok {
			return false
		}
	}
	return true
}

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
			s.user, s.pass = u.User.Username(), p
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
// the CA file.
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
	s.stream = "KV_" + s.bucket
	s.kvPrefix = "$KV." + s.bucket + "."
	if cfg.NKeySeed != "" {
		k, err := parseNKeySeed(cfg.NKeySeed)
		if err != nil {
			return nil, err
		}
		s.nkey = k
	}
	if cfg.Token != "" && (cfg.User != "" || cfg.NKeySeed != "") {
		return nil, errors.New("natsedge: set only one of nats.token, nats.user or nats.nkeySeed")
	}
	if cfg.User != "" && cfg.NKeySeed != "" {
		return nil, errors.New("natsedge: set only one of nats.user or nats.nkeySeed")
	}
	s.idleHB = cfg.IdleHeartbeat
	if s.idleHB < 100*time.Millisecond {
		return nil, errors.New("natsedge: idle heartbeat must be at least 100ms")
	}
	s.replica = cfg.ReplicaID
	if s.replica == "" {
		h, err := os.Hostname()
		if err != nil || h == "" {
			h = "edge"
		}
		s.replica = h
	}
	s.wantTLS = cfg.CAFile != ""
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
	s.tlsConfig = tc
	s.logf = cfg.Logf
	if s.logf == nil {
		s.logf = log.Printf
	}
	return s, nil
}

// auth returns the credentials for server u: the Config's, else the URL's.
func (s *settings) auth(u serverURL) (token, user, pass string) {
	if s.cfg.Token != "" || s.cfg.User != "" || s.nkey != nil {
		return s.cfg.Token, s.cfg.User, s.cfg.Password
	}
	return u.token, u.user, u.pass
}
