package natsedge

import "time"

// pruneLoop drops the facts past their exp from the edge state until Close,
// every thirty idle heartbeats (30s by default: Prune walks every fact,
// interpreted under Yaegi), whether a connection is up or not. Those facts
// change no decision (every token they covered has expired too), so Prune
// neither moves the version nor runs OnChange, and it takes the state's
// lock: it may run beside the link's Apply calls. It touches nothing of the
// watcher but the state and the logger.
func (w *Watcher) pruneLoop() {
	defer close(w.pruned)
	t := time.NewTicker(30 * w.s.idleHB)
	defer t.Stop()
	for {
		select {
		case <-w.ctx.Done():
			return
		case now := <-t.C:
			w.prune(now)
		}
	}
}

// prune runs one Prune. A panic (a bug) is logged instead of taking Traefik
// down; the next tick tries again.
func (w *Watcher) prune(now time.Time) {
	defer func() {
		if r := recover(); r != nil {
			w.logf("internal error pruning the edge state (please report): %v", r)
		}
	}()
	w.state.Prune(now)
}
