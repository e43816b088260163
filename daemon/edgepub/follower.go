package edgepub

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/edgepass/edgepass/plugin/edgestate"
	"github.com/edgepass/edgepass/plugin/token"
)

// PruneInterval is how often the follower drops expired facts from its state.
const PruneInterval = time.Minute

// Follower follows the edge bucket (replay, then live) into an
// edgestate.State, the same facts the Traefik plugin applies, for /verify.
type Follower struct {
	state  *edgestate.State
	cancel context.CancelFunc
	done   chan struct{}
	synced chan struct{}
	once   sync.Once
}

// Follow starts following bucket; it returns once the watch is set up, and
// Synced is closed when the replay of existing facts is complete. anchors
// are the trust anchors whose signed keys and groups facts are accepted
// (keys.Ring.AnchorKeys), exactly as an edge configured with trustAnchors.
func Follow(ctx context.Context, js jetstream.JetStream, bucket string, anchors *token.KeySet, logger *slog.Logger) (*Follower, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	kv, err := js.KeyValue(ctx, bucket)
	if err != nil {
		return nil, fmt.Errorf("edgepub: open edge bucket %s: %w", bucket, err)
	}
	wctx, cancel := context.WithCancel(context.Background())
	kw, err := kv.WatchAll(wctx)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("edgepub: watch edge bucket %s: %w", bucket, err)
	}
	w := &Follower{state: edgestate.NewWithAnchors(anchors), cancel: cancel, done: make(chan struct{}), synced: make(chan struct{})}
	go w.run(wctx, kw, logger)
	return w, nil
}

func (w *Follower) run(ctx context.Context, kw jetstream.KeyWatcher, logger *slog.Logger) {
	defer close(w.done)
	defer func() { _ = kw.Stop() }()
	prune := time.NewTicker(PruneInterval)
	defer prune.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-prune.C:
			w.state.Prune(now)
		case e, ok := <-kw.Updates():
			if !ok {
				return
			}
			now := time.Now()
			if e == nil { // replay done
				w.state.SetSynced(true)
				w.state.Touch(now)
				w.once.Do(func() { close(w.synced) })
				continue
			}
			if err := w.state.Apply(e.Key(), opName(e.Operation()), e.Value(), e.Revision(), now); err != nil {
				if errors.Is(err, edgestate.ErrUnknownKey) {
					logger.Debug("edgepub: ignoring unknown edge key", "key", e.Key())
				} else {
					logger.Warn("edgepub: ignoring edge fact", "key", e.Key(), "err", err)
				}
			}
		}
	}
}

func opName(op jetstream.KeyValueOp) string {
	switch op {
	case jetstream.KeyValueDelete:
		return "DEL"
	case jetstream.KeyValuePurge:
		return "PURGE"
	default:
		return ""
	}
}

// State is the followed edge state.
func (w *Follower) State() *edgestate.State { return w.state }

// Synced is closed once the existing facts have been replayed.
func (w *Follower) Synced() <-chan struct{} { return w.synced }

// Close stops following.
func (w *Follower) Close() {
	w.cancel()
	<-w.done
}
