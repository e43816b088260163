// Package natsedge keeps an edge (a Traefik replica running the edgepass
// plugin) in step with the edge KV bucket the daemon writes: revocations,
// group overrides and verification keys.
//
// nats.go cannot run inside Traefik (yaegi has no unsafe), so this package
// speaks the NATS client protocol itself with the standard library: INFO,
// CONNECT (token, user/password or NKey), PING/PONG, SUB/UNSUB, PUB, MSG and
// HMSG, over TCP or TLS, with reconnects across several servers.
//
// On each connection it creates an ordered, ephemeral push consumer on the
// bucket's stream (KV_<bucket>) through the JetStream API, replays the bucket
// into an edgestate.State and then follows it live. A consumer sequence gap,
// three missed idle heartbeats or a reconnect recreate the consumer from the
// last applied stream sequence + 1. Every 5s the edge publishes its sync
// state on edgepass.heartbeat.<bucket>.
//
// The edge's NATS user needs: publish on $JS.API.CONSUMER.CREATE.KV_<bucket>
// (and .>), $JS.API.CONSUMER.DELETE.KV_<bucket>.>, $JS.FC.KV_<bucket>.> and
// edgepass.heartbeat.<bucket>; subscribe on _INBOX.>.
//
// Everything here must load in yaegi v0.16.1: standard library only, no
// generics, no named integer types compared with typed constants, no
// channel receive inside a multi-value return.
package natsedge
