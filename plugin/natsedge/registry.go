package natsedge

import (
	"strconv"
	"strings"
	"sync"
)

// The registry holds the process-wide watchers, one per distinct Config
// (docs/architecture.md, I2): Traefik calls New for every middleware
// instance and every reload, and never stops a plugin, so all of them share
// one watcher, one connection and one edgestate.State per NATS setting. A
// watcher stays registered until Close (tests only).
var (
	sharedMu sync.Mutex
	shared   = map[string]*Watcher{} // canonicalKey(cfg) -> its watcher
)

// Shared returns the process-wide watcher for cfg, starting it in the background
// on first use; it never blocks on the network. Traefik calls New for every
// middleware instance and every reload, so all of them share one connection.
// The first caller's Logf is the one used.
func Shared(cfg Config) (*Watcher, error) {
	key := canonicalKey(cfg)
	sharedMu.Lock()
	defer sharedMu.Unlock()
	if w, ok := shared[key]; ok {
		return w, nil
	}
	s, err := validate(cfg)
	if err != nil {
		return nil, err
	}
	w := start(s, key)
	shared[key] = w
	return w, nil
}

// unshare removes a closed watcher from the registry, so that a later
// Shared call with the same Config starts a new one.
func unshare(w *Watcher) {
	sharedMu.Lock()
	if shared[w.key] == w {
		delete(shared, w.key)
	}
	sharedMu.Unlock()
}

// canonicalKey identifies a Config for process-wide sharing.
func canonicalKey(cfg Config) string {
	cfg = normalize(cfg)
	fields := []string{
		strings.Join(cfg.URLs, ","), cfg.Bucket, cfg.Token, cfg.TokenFile, cfg.User, cfg.Password,
		cfg.PasswordFile, cfg.NKeySeed, cfg.NKeySeedFile, cfg.CredsFile, cfg.CertFile, cfg.KeyFile,
		cfg.CAFile, cfg.TLSServerName, cfg.EdgeName, cfg.ReplicaID, cfg.Version, strings.Join(cfg.TrustAnchors, ","),
		strconv.FormatBool(cfg.InsecureSkipVerify), cfg.IdleHeartbeat.String(), cfg.CrossCheckInterval.String(),
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
