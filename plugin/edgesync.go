package edgepass

import (
	"fmt"
	"os"

	"github.com/edgepass/edgepass/plugin/edgestate"
	"github.com/edgepass/edgepass/plugin/natsedge"
)

// logf writes diagnostics to Traefik's log (Yaegi maps os.Stderr to it); never
// called with tokens, cookies or secrets.
func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "edgepass: "+format+"\n", args...)
}

// edgeState returns the process-wide edge state for the NATS settings, starting
// the shared watcher on first use (natsedge.Shared never blocks on the network);
// nil without nats.urls.
func edgeState(n NATSConfig, anchors []string) (*edgestate.State, error) {
	w, err := edgeWatcher(n, anchors)
	if w == nil || err != nil {
		return nil, err
	}
	return w.State(), nil
}

// edgeWatcher returns the process-wide NATS watcher for the settings (nil
// without nats.urls): its state, and its requests to the daemon.
func edgeWatcher(n NATSConfig, anchors []string) (*natsedge.Watcher, error) {
	if len(n.URLs) == 0 {
		return nil, nil
	}
	w, err := natsedge.Shared(natsedge.Config{
		URLs:               n.URLs,
		Bucket:             n.Bucket,
		Token:              n.Token,
		TokenFile:          n.TokenFile,
		User:               n.User,
		Password:           n.Password,
		PasswordFile:       n.PasswordFile,
		NKeySeed:           n.NKeySeed,
		NKeySeedFile:       n.NKeySeedFile,
		CredsFile:          n.CredsFile,
		CertFile:           n.CertFile,
		KeyFile:            n.KeyFile,
		EdgeName:           n.EdgeName,
		TrustAnchors:       anchors,
		CAFile:             n.CAFile,
		TLSServerName:      n.TLSServerName,
		InsecureSkipVerify: n.InsecureSkipVerify,
		ReplicaID:          n.ReplicaID,
		Version:            Version,
		Logf:               logf,
	})
	if err != nil {
		return nil, fmt.Errorf("edgepass: nats: %w", err)
	}
	return w, nil
}
