package natsedge

import (
	"strings"
	"testing"
	"time"
)

// syncedAt1 runs a first sync on fc up to stream sequence 1 (revoke.session.a)
// and returns the consumer's create request.
func syncedAt1(t *testing.T, w *Watcher, fc *fakeConn) createReq {
	t.Helper()
	cr := activate(t, fc, 1)
	fc.deliver(cr, testBucket, "revoke.session.a", "", revokeJSON(time.Hour), 1, 1, 0)
	waitFor(t, "synced", 5*time.Second, func() bool { return w.State().Synced() && w.State().LastSeq() == 1 })
	return cr
}

// TestBridgeFollowsTheStreamWhileCreatesGoUnanswered: after a reconnect the
// consumer create goes unanswered (the cluster elects a metadata leader);
// direct gets answered by a stream peer carry a revocation to the edge
// meanwhile. The consumer, once created (from where the edge stood when it
// asked), delivers what the bridge applied again: skipped, nothing applied
// twice, nothing out of order; the bridge stops and a late direct-get answer
// is ignored.
func TestBridgeFollowsTheStreamWhileCreatesGoUnanswered(t *testing.T) {
	srv := newFakeServer(t)
	w, logs := startWatcher(t, Config{URLs: []string{srv.url()}})
	fc := srv.next(5 * time.Second)
	syncedAt1(t, w, fc)

	lost := time.Now()
	fc.close()
	fc2 := srv.next(5 * time.Second)
	cr := fc2.expectCreate(t, testBucket, 5*time.Second) // left unanswered for now
	if cr.req.Config.OptStartSeq != 2 {
		t.Fatalf("consumer from %d, want 2", cr.req.Config.OptStartSeq)
	}
	dg := fc2.expectDirectGet(t, testBucket, 3*time.Second)
	if d := time.Since(lost); d < bridgeDelay || d > bridgeDelay+time.Second {
		t.Fatalf("first direct get %s after the connection was lost, want about %s", d, bridgeDelay)
	}
	if dg.req.Seq != 2 || dg.req.NextBySubj != "$KV.edge.>" || dg.req.Batch != bridgeBatch || dg.req.MaxBytes != bridgeMaxBytes {
		t.Fatalf("direct get %+v", dg.req)
	}
	if !strings.HasPrefix(dg.reply, "_EDGEPASS.edge.") {
		t.Fatalf("reply subject %s outside the edge's inbox", dg.reply)
	}
	applied := w.State().Stats().Applied
	// Sequence 2 is gone (superseded); 3 and 4 are revocations.
	fc2.directEntry(dg.reply, testBucket, "revoke.session.b", "", revokeJSON(time.Hour), 3, 1, 0)
	fc2.directEntry(dg.reply, testBucket, "revoke.session.c", "", revokeJSON(time.Hour), 4, 0, 3)
	fc2.directStatus(dg.reply, "204 EOB", "Nats-Num-Pending: 0", "Nats-Last-Sequence: 4")
	waitFor(t, "revocations applied through direct gets", 5*time.Second, func() bool {
		return w.State().Revoked("b", "", 0, time.Now()) && w.State().Revoked("c", "", 0, time.Now())
	})
	if w.State().Synced() {
		t.Fatal("synced while following the stream with direct gets")
	}
	if st := w.Stats(); st.DirectGets < 1 || st.DirectEntries != 2 || st.Consumer != "" {
		t.Fatalf("stats %+v", st)
	}
	if got := w.State().Stats().Applied - applied; got != 2 {
		t.Fatalf("%d facts applied, want 2", got)
	}

	// The create is answered at last: its consumer starts at 2, before what
	// the bridge applied.
	fc2.replyCreated(cr, 3)
	waitFor(t, "consumer active", 5*time.Second, func() bool { return w.Stats().Consumer == cr.name })
	gets := w.Stats().DirectGets
	fc2.deliver(cr, testBucket, "revoke.session.b", "", revokeJSON(time.Hour), 3, 1, 2)
	fc2.deliver(cr, testBucket, "revoke.session.c", "", revokeJSON(time.Hour), 4, 2, 1)
	fc2.deliver(cr, testBucket, "revoke.session.d", "", revokeJSON(time.Hour), 5, 3, 0)
	waitFor(t, "caught up through the consumer", 5*time.Second, func() bool {
		return w.State().Synced() && w.State().Revoked("d", "", 0, time.Now())
	})
	if got := w.State().Stats().Applied - applied; got != 3 {
		t.Fatalf("%d facts applied, want 3: the consumer's deliveries of what the bridge applied were applied again", got)
	}
	// A late answer to the bridge's request changes nothing.
	fc2.directEntry(dg.reply, testBucket, "revoke.session.late", "", revokeJSON(time.Hour), 7, 0, 5)
	fc2.deliver(cr, testBucket, "revoke.session.e", "", revokeJSON(time.Hour), 6, 4, 0)
	waitFor(t, "live delivery", 5*time.Second, func() bool { return w.State().Revoked("e", "", 0, time.Now()) })
	if w.State().Revoked("late", "", 0, time.Now()) || w.State().LastSeq() != 6 {
		t.Fatalf("a direct-get answer after the consumer came back was applied (last seq %d)", w.State().LastSeq())
	}
	time.Sleep(3 * bridgePoll)
	if st := w.Stats(); st.DirectGets > gets || st.Gaps != 0 || st.Hijacks != 0 || st.Resyncs != 0 {
		t.Fatalf("after the consumer came back: stats %+v (direct gets were %d)", st, gets)
	}
	if n := logs.count("following it with direct gets"); n != 1 {
		t.Fatalf("bridge logged %d times, want once:\n%s", n, logs)
	}
}

// TestBridgeAsksUntilNothingIsLeft: batches follow each other while the
// server reports more pending; a 404 ends a round; a server without batches
// (one entry, no Nats-Num-Pending) is asked for the next at once; deletes
// and refused entries move the sequence as deliveries do.
func TestBridgeAsksUntilNothingIsLeft(t *testing.T) {
	srv := newFakeServer(t)
	w, _ := startWatcher(t, Config{URLs: []string{srv.url()}})
	fc := srv.next(5 * time.Second)
	syncedAt1(t, w, fc)
	fc.close()
	fc2 := srv.next(5 * time.Second)
	fc2.expectCreate(t, testBucket, 5*time.Second)

	dg := fc2.expectDirectGet(t, testBucket, 3*time.Second)
	fc2.directEntry(dg.reply, testBucket, "revoke.session.b", "", revokeJSON(time.Hour), 2, 5, 0)
	fc2.directStatus(dg.reply, "204 EOB", "Nats-Num-Pending: 5", "Nats-Last-Sequence: 2")
	dg = fc2.expectDirectGet(t, testBucket, bridgePoll/2) // at once, not on the next tick
	if dg.req.Seq != 3 {
		t.Fatalf("next batch from %d, want 3", dg.req.Seq)
	}
	// A server that ignores "batch": one entry per request.
	fc2.directEntry(dg.reply, testBucket, "revoke.session.c", "DEL", "", 3, -1, 0)
	dg = fc2.expectDirectGet(t, testBucket, bridgePoll/2)
	if dg.req.Seq != 4 {
		t.Fatalf("next request from %d, want 4", dg.req.Seq)
	}
	fc2.directEntry(dg.reply, testBucket, "nonsense.key", "", "x", 4, -1, 0)
	dg = fc2.expectDirectGet(t, testBucket, bridgePoll/2)
	fc2.directEntry(dg.reply, testBucket, "revoke.session.d", "", revokeJSON(time.Hour), 6, -1, 0)
	dg = fc2.expectDirectGet(t, testBucket, bridgePoll/2)
	if dg.req.Seq != 7 {
		t.Fatalf("next request from %d, want 7", dg.req.Seq)
	}
	fc2.directStatus(dg.reply, "404 Message Not Found")
	waitFor(t, "applied", 5*time.Second, func() bool { return w.State().Revoked("d", "", 0, time.Now()) })
	if w.State().LastSeq() != 6 || !w.State().Revoked("b", "", 0, time.Now()) || w.State().Stats().Rejected != 2 {
		t.Fatalf("last seq %d, rejected %d", w.State().LastSeq(), w.State().Stats().Rejected)
	}
	// Nothing more for now: the next tick asks again from 7.
	dg = fc2.expectDirectGet(t, testBucket, 2*time.Second)
	if dg.req.Seq != 7 {
		t.Fatalf("asked again from %d", dg.req.Seq)
	}
	// No responders (seen while a stream peer leaves): asked again at the
	// next tick, not after a hold-off.
	fc2.directStatus(dg.reply, "503")
	start := time.Now()
	dg = fc2.expectDirectGet(t, testBucket, 2*time.Second)
	if d := time.Since(start); d > 3*bridgePoll || dg.req.Seq != 7 {
		t.Fatalf("after no responders: asked again from %d after %s", dg.req.Seq, d)
	}
	// An answer for another stream, or out of order, is not applied.
	fc2.directEntry(dg.reply, "other", "revoke.session.x", "", revokeJSON(time.Hour), 8, 0, 0)
	dg = fc2.expectDirectGet(t, testBucket, bridgeHoldOff+2*time.Second)
	fc2.directEntry(dg.reply, testBucket, "revoke.session.y", "", revokeJSON(time.Hour), 5, 0, 0)
	time.Sleep(100 * time.Millisecond)
	if w.State().Revoked("x", "", 0, time.Now()) || w.State().Revoked("y", "", 0, time.Now()) || w.State().LastSeq() != 6 {
		t.Fatal("a foreign or out-of-order direct-get answer was applied")
	}
}

// TestBridgeRefusedDirectGetTurnsItselfOff: a credential without the direct
// get permission (an older deployment) leaves the bridge off on that
// connection after one try, logged once across reconnects; consumer creates
// go on.
func TestBridgeRefusedDirectGetTurnsItselfOff(t *testing.T) {
	srv := newFakeServer(t)
	w, logs := startWatcher(t, Config{URLs: []string{srv.url()}})
	fc := srv.next(5 * time.Second)
	syncedAt1(t, w, fc)
	for round := 0; round < 2; round++ {
		fc.close()
		fc = srv.next(5 * time.Second)
		fc.expectCreate(t, testBucket, 5*time.Second)
		fc.expectDirectGet(t, testBucket, 3*time.Second)
		fc.send("-ERR 'Permissions Violation for Publish to \"$JS.API.DIRECT.GET.KV_edge\"'\r\n")
		deadline := time.After(2 * requestTimeout)
		creates := 0
		for done := false; !done; {
			select {
			case op := <-fc.ops:
				if op.verb == "PUB" && strings.HasPrefix(op.args[0], "$JS.API.DIRECT.GET.") {
					t.Fatalf("round %d: direct get after the server refused it", round)
				}
				if op.verb == "PUB" && strings.HasPrefix(op.args[0], "$JS.API.CONSUMER.CREATE.") {
					creates++
				}
			case <-deadline:
				done = true
			}
		}
		if creates == 0 {
			t.Fatalf("round %d: no consumer create retried", round)
		}
	}
	if n := logs.count("refused $JS.API.DIRECT.GET.KV_edge"); n != 1 {
		t.Fatalf("refusal logged %d times, want once:\n%s", n, logs)
	}
	if st := w.Stats(); st.DirectGets != 2 || st.DirectEntries != 0 {
		t.Fatalf("stats %+v", st)
	}
	if !strings.Contains(logs.String(), "EdgePermissions") {
		t.Fatalf("the log does not say what to grant:\n%s", logs)
	}
}

// TestBridgeCoversASuspectConsumer: the server announces that a cluster peer
// left; the edge's (R1) consumer may have lived there, so until it is heard
// from again the edge follows the stream with direct gets. A heartbeat of
// the consumer ends that; its counts below what the bridge applied are no
// hijack.
func TestBridgeCoversASuspectConsumer(t *testing.T) {
	peers := []string{"127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"}
	srv := newFakeServer(t, func(s *fakeServer) { s.connectURLs = peers })
	w, logs := startWatcher(t, Config{URLs: []string{srv.url()}})
	fc := srv.next(5 * time.Second)
	cr := syncedAt1(t, w, fc)

	fc.info(peers[:2])
	left := time.Now()
	dg := fc.expectDirectGet(t, testBucket, 2*time.Second)
	if d := time.Since(left); d > bridgePoll {
		t.Fatalf("first direct get %s after the peer left", d)
	}
	fc.directEntry(dg.reply, testBucket, "revoke.session.b", "", revokeJSON(time.Hour), 2, 0, 0)
	fc.directStatus(dg.reply, "204 EOB", "Nats-Num-Pending: 0", "Nats-Last-Sequence: 2")
	waitFor(t, "applied through direct gets", 5*time.Second, func() bool { return w.State().Revoked("b", "", 0, time.Now()) })

	// The consumer is alive after all: a heartbeat, sent before it saw 2.
	fc.status(cr, "", "NATS/1.0 100 Idle Heartbeat\r\nNats-Last-Consumer: 1\r\nNats-Last-Stream: 1\r\n\r\n")
	time.Sleep(bridgePoll + 50*time.Millisecond)
	gets := w.Stats().DirectGets
	fc.deliver(cr, testBucket, "revoke.session.b", "", revokeJSON(time.Hour), 2, 2, 0)
	fc.status(cr, "", "NATS/1.0 100 Idle Heartbeat\r\nNats-Last-Consumer: 2\r\nNats-Last-Stream: 2\r\n\r\n")
	time.Sleep(3 * bridgePoll)
	if st := w.Stats(); st.DirectGets != gets || st.Hijacks != 0 || st.Resyncs != 0 || st.Gaps != 0 || st.Consumer != cr.name {
		t.Fatalf("after the consumer's heartbeat: stats %+v (direct gets were %d)\n%s", st, gets, logs)
	}
	if !w.State().Synced() || w.State().LastSeq() != 2 {
		t.Fatalf("synced %v, last seq %d", w.State().Synced(), w.State().LastSeq())
	}
	if n := logs.count("a cluster peer left"); n != 1 {
		t.Fatalf("bridge logged %d times:\n%s", n, logs)
	}
}

// TestBridgeCoversASilentConsumer: a consumer silent for an idle heartbeat
// and a bit is covered with direct gets before the stall is declared.
func TestBridgeCoversASilentConsumer(t *testing.T) {
	srv := newFakeServer(t)
	hb := 500 * time.Millisecond
	w, _ := startWatcher(t, Config{URLs: []string{srv.url()}, IdleHeartbeat: hb})
	fc := srv.next(5 * time.Second)
	syncedAt1(t, w, fc)
	start := time.Now()
	dg := fc.expectDirectGet(t, testBucket, 3*time.Second)
	if d := time.Since(start); d < hb || d > 3*hb {
		t.Fatalf("first direct get %s after the last delivery", d)
	}
	fc.directEntry(dg.reply, testBucket, "revoke.session.b", "", revokeJSON(time.Hour), 2, 0, 0)
	fc.directStatus(dg.reply, "204 EOB", "Nats-Num-Pending: 0", "Nats-Last-Sequence: 2")
	waitFor(t, "applied through direct gets", 5*time.Second, func() bool { return w.State().Revoked("b", "", 0, time.Now()) })
	// The stall is declared all the same: a new consumer, from 3.
	cr := fc.expectCreate(t, testBucket, 5*time.Second)
	if cr.req.Config.OptStartSeq != 3 {
		t.Fatalf("recreated from %d, want 3", cr.req.Config.OptStartSeq)
	}
}

// TestNoBridgeForAFirstSync: without anything applied yet the consumer's
// replay is the only way in; a slow first create asks no direct gets.
func TestNoBridgeForAFirstSync(t *testing.T) {
	srv := newFakeServer(t)
	w, _ := startWatcher(t, Config{URLs: []string{srv.url()}})
	fc := srv.next(5 * time.Second)
	fc.expectCreate(t, testBucket, 5*time.Second)
	deadline := time.After(requestTimeout + 500*time.Millisecond)
	for {
		select {
		case op := <-fc.ops:
			if op.verb == "PUB" && strings.HasPrefix(op.args[0], "$JS.API.DIRECT.GET.") {
				t.Fatal("direct get before the first sync")
			}
		case <-deadline:
			if w.Stats().DirectGets != 0 {
				t.Fatalf("stats %+v", w.Stats())
			}
			return
		}
	}
}
