// Package natsedge keeps an edge (a Traefik replica running the edgepass
// plugin) in step with the edge KV bucket the daemon writes: revocations,
// group overrides and verification keys.
//
// nats.go cannot run inside Traefik (yaegi has no unsafe), so this package
// speaks the NATS client protocol itself with the standard library: INFO,
// CONNECT (token, user/password, NKey, or a .creds file's JWT and NKey; with
// an optional TLS client certificate), PING/PONG, SUB/UNSUB, PUB, MSG and
// HMSG, over TCP or TLS. It tries the configured servers in random order,
// learns the cluster peers they announce, and moves to another server at
// once when a connection is lost. Secret files are read again at every
// connection attempt.
//
// NATS is not trusted to be private. Each edge has a name (EdgeName, else
// User, else "edge") and its credential needs exactly
// EdgePermissions(bucket, edge): its own inbox (InboxPrefix), STREAM.INFO and
// direct gets of the bucket's stream, create/delete of its named consumers
// (ConsumerName(edge, 0..ConsumerSlots-1)), their flow control, and its
// heartbeat subject (HeartbeatSubject). No other edge can read its
// deliveries or touch its consumers.
//
// On each connection it creates a named push consumer (action "create", in
// a random free slot) on the bucket's stream KV_<bucket>, replays the bucket
// into an edgestate.State and then follows it live. A consumer sequence gap,
// three missed idle heartbeats, a reconnect, or traffic on its deliver
// subject that its own consumer cannot have sent recreate the consumer from
// the last applied stream sequence + 1, in another slot. Every
// CrossCheckInterval it compares the stream's last sequence (STREAM.INFO)
// with what was applied: a consumer that delivers nothing while the stream
// moved on for a whole interval has been deleted or replaced, and is
// recreated too (Stats.Hijacks). Every 5s the edge publishes its sync state
// on HeartbeatSubject(bucket, edge).
//
// Creating a consumer needs the JetStream metadata leader, which a cluster
// re-elects for seconds after a node dies. While the edge has no consumer
// that delivers (none for 300ms, or one silent for an idle heartbeat plus
// 300ms, or one not heard from since a cluster peer left), it follows the
// stream with direct gets ($JS.API.DIRECT.GET.KV_<bucket>, answered by any
// current stream peer) from the last applied sequence + 1, applying entries
// exactly as deliveries; the consumer created later skips what they applied.
// The edge stays "not synced" meanwhile (Stats.DirectGets,
// Stats.DirectEntries; see bridgeState in bridge.go).
//
// The first sync of an edge with trust anchors starts with the daemon's
// signed snapshot (docs/contracts.md, "Snapshots"): a consumer in one of its
// slots reads the snapshot.> subjects, each verified chunk is applied, and
// the bucket's consumer then starts after the sequence of the newest
// complete generation (or replays everything when none is complete).
//
// Every thirty idle heartbeats (30s by default) a goroutine of its own
// drops the facts past their expiry from the state, connected or not.
//
// # Files
//
// One concern per file. A Watcher is the process-wide follower of one NATS
// setting; its run goroutine dials the servers and runs one link at a time:
// a link is one NATS connection and its event loop, which drives the
// consumer and everything after it in this list. ("link" always means a
// NATS connection here; a session is a login session, as in the rest of
// edgepass.)
//
//   - registry.go: Shared and canonicalKey: one Watcher per distinct Config
//     for the whole process.
//   - watcher.go: Watcher, Stats, start and Close, logging.
//   - reconnect.go: the run goroutine: server order, cluster peers learned
//     from INFO, backoff.
//   - link.go: one connection's event loop (runLink): frames, ticks,
//     PING/PONG, JetStream API requests and their replies.
//   - consumer.go: the JetStream consumer: slots, create, resync, its
//     phases.
//   - delivery.go: what arrives on the deliver subject: entries, idle
//     heartbeats, flow control, and the hijacks they reveal.
//   - snapshot.go: the first sync's signed snapshot.
//   - crosscheck.go: STREAM.INFO against what was applied.
//   - bridge.go: the direct-get bridge while no consumer delivers.
//   - heartbeat.go: Heartbeat, the sync state each edge publishes.
//   - prune.go: dropping expired facts, on a ticker of its own.
//   - request.go: requests to the daemon (Request), on a connection of
//     their own.
//   - subjects.go: edge names, subjects, consumer names, EdgePermissions.
//   - config.go: Config, its defaults and validation, secrets and
//     credentials.
//   - conn.go: dialing, TLS, the CONNECT handshake, PUB/SUB/UNSUB.
//   - proto.go: the protocol parser: INFO, MSG, HMSG, headers, ack subjects.
//   - creds.go, nkey.go: .creds files and NKey signatures.
//
// Everything here must load in yaegi v0.16.1: standard library only, no
// generics, no named integer types compared with typed constants, no
// channel receive inside a multi-value return, no nil in a tuple assignment
// (`p.x, p.y = nil, true` panics with "reflect: New(nil)"; assign one by
// one). The per-message path is plain code: under yaegi a method call costs
// about 2 µs, a function call 0.8 µs, a call into the standard library
// 0.3 µs and a closure a frame of its own.
package natsedge
