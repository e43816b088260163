package e2e

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/edgepass/edgepass/daemon/seal"
	"github.com/edgepass/edgepass/integration/harness"
	"github.com/edgepass/edgepass/plugin/edgestate"
	"github.com/edgepass/edgepass/plugin/natsedge"
	"github.com/edgepass/edgepass/plugin/token"
)

// Buckets the daemon keeps (its defaults, as the harness runs it).
const (
	keyBucket     = "edgepass_keys"
	sessionBucket = "edgepass_sessions"
)

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// asDaemon connects with the daemon's own NATS rights: the position "writer
// of the edge bucket" of the trust model, stronger than any edge.
func asDaemon(t *testing.T, s *harness.Stack) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, js, err := s.NATSAccess().JetStream("edgepass-e2e-attacker")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc, js
}

// Attack: a local process (another user, a container, an app behind
// Traefik) connects to the daemon's embedded NATS on loopback — anonymously,
// or with the edge credential Traefik holds — to read the signing key or the
// sessions, or to write an edge fact.
func TestNATSRefusesAnonymousAndEdgeCannotReachSecrets(t *testing.T) {
	s := shared(t)
	url := s.EdgePluginOptions("probe").NATSURLs[0]
	if nc, err := nats.Connect(url, nats.NoReconnect(), nats.Timeout(3*time.Second)); err == nil {
		nc.Close()
		t.Fatal("an anonymous client connected to the embedded NATS")
	} else if !strings.Contains(strings.ToLower(err.Error()), "authorization") {
		t.Fatalf("anonymous connect: %v, want an authorization violation", err)
	}

	pw, err := os.ReadFile(s.Daemon.EdgePasswordFile(harness.DefaultEdgeName))
	if err != nil {
		t.Fatal(err)
	}
	violations := make(chan error, 16)
	edge, err := nats.Connect(url, nats.UserInfo(harness.DefaultEdgeName, strings.TrimSpace(string(pw))), nats.NoReconnect(),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { violations <- err }))
	if err != nil {
		t.Fatalf("the edge credential cannot connect: %v", err)
	}
	defer edge.Close()
	js, _ := jetstream.New(edge)
	ctx := ctxFor(t, 20*time.Second)
	for _, b := range []string{keyBucket, sessionBucket} {
		short, cancel := context.WithTimeout(ctx, 2*time.Second)
		if _, err := js.KeyValue(short, b); err == nil {
			t.Errorf("the edge credential opened the %s bucket", b)
		}
		if _, err := edge.Request("$JS.API.DIRECT.GET.KV_"+b, []byte(`{"last_by_subj":"$KV.`+b+`.ring"}`), time.Second); err == nil {
			t.Errorf("the edge credential read %s with a direct get", b)
		}
		cancel()
	}
	if err := edge.Publish("$KV."+natsedge.DefaultBucket+".keys", []byte(`{"keys":[]}`)); err != nil {
		t.Fatal(err)
	}
	_ = edge.Flush()
	select {
	case err := <-violations:
		if !strings.Contains(err.Error(), "Permissions Violation") {
			t.Fatalf("writing a fact: %v", err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("the edge credential wrote an edge fact without a permissions violation")
	}
}

// signedFactFromRogue is a keys fact carrying attacker's key, signed by a
// key nobody configured as a trust anchor.
func signedFactFromRogue(t *testing.T, jwks []byte) []byte {
	t.Helper()
	_, rogue, _ := ed25519.GenerateKey(nil)
	v, err := edgestate.SignKeys(edgestate.KeysFact{Iat: time.Now().UnixMilli() + 1000, JWKS: jwks, MaxTokenLifetime: 100 * 24 * 3600}, rogue)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// mint signs a session token for an invented admin with key k.
func mint(t *testing.T, issuer, kid string, k ed25519.PrivateKey, life time.Duration) string {
	t.Helper()
	now := time.Now()
	raw, err := token.Sign(&token.Claims{Issuer: issuer, Audience: token.Audience{"edgepass"}, Subject: "mallory", SessionID: harness.RandomSecret(32),
		IssuedAt: now.Unix(), Expiry: now.Add(life).Unix(), PreferredUsername: "mallory", Groups: []string{"admins"}}, kid, k)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// Attack: a writer of the edge bucket that is not the daemon replaces the
// edges' verification keys with its own — as a plain JWKS, or signed by a
// key of its own — and mints an admin token. Before the fix one such write
// gave every route to the attacker (and every real session a 401).
func TestForgedKeysFactIgnoredByEveryEdge(t *testing.T) {
	s := shared(t)
	alice := signIn(t, s, harness.AliceUser, harness.AlicePassword)
	_, js := asDaemon(t, s)
	ctx := ctxFor(t, 30*time.Second)
	kv, err := js.KeyValue(ctx, natsedge.DefaultBucket)
	if err != nil {
		t.Fatal(err)
	}
	// Put the daemon's keys back after the attack, so edges started later
	// (which replay the bucket) find a signed key set as the latest.
	t.Cleanup(func() { cli(t, s.Daemon, "keys", "rotate") })

	evilPub, evil, _ := ed25519.GenerateKey(nil)
	jwks, _ := token.NewKeySet(token.Key{ID: "evil", Public: evilPub}).MarshalJWKS()
	for _, value := range [][]byte{jwks, signedFactFromRogue(t, jwks)} {
		if _, err := kv.Put(ctx, edgestate.KeyKeys, value); err != nil {
			t.Fatal(err)
		}
	}
	forged := mint(t, s.Daemon.PublicURL, "evil", evil, time.Hour)
	// Give the edges time to apply (they take facts in milliseconds).
	time.Sleep(time.Second)
	mustStatus(t, s.Traefiks, harness.PathAdmins+"/forged", bearer(forged), http.StatusUnauthorized, "a token signed with a forged key")
	mustStatus(t, s.Traefiks, harness.PathApp+"/still-signed-in", bearer(alice.token), http.StatusOK, "a real session after the forged keys fact")
}

// Attack: a writer deletes or purges a revocation so a signed-out session
// works again.
func TestDeletedRevocationStaysInForce(t *testing.T) {
	s := shared(t)
	bob := signIn(t, s, harness.BobUser, harness.BobPassword)
	path := harness.PathApp + "/deleted-revocation"
	mustStatus(t, s.Traefiks, path, bearer(bob.token), http.StatusOK, "before the revocation")
	cli(t, s.Daemon, "sessions", "revoke", bob.claims.SessionID)
	waitStatus(t, s, s.Traefiks, path, bearer(bob.token), http.StatusUnauthorized, 5*time.Second, "revocation")

	_, js := asDaemon(t, s)
	ctx := ctxFor(t, 30*time.Second)
	kv, err := js.KeyValue(ctx, natsedge.DefaultBucket)
	if err != nil {
		t.Fatal(err)
	}
	key := edgestate.PrefixRevokeSession + bob.claims.SessionID
	if err := kv.Delete(ctx, key); err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, key, []byte(`{"exp":1}`)); err != nil { // a shorter one
		t.Fatal(err)
	}
	if err := kv.Purge(ctx, key); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	mustStatus(t, s.Traefiks, path, bearer(bob.token), http.StatusUnauthorized, "after the revocation was deleted, shortened and purged")
}

// leakSigningKey plays an attacker who got both a NATS dump and the
// daemon's encryption key file: the active signing key, and its id.
func leakSigningKey(t *testing.T, s *harness.Stack) (string, ed25519.PrivateKey) {
	t.Helper()
	_, js := asDaemon(t, s)
	ctx := ctxFor(t, 20*time.Second)
	kv, err := js.KeyValue(ctx, keyBucket)
	if err != nil {
		t.Fatal(err)
	}
	e, err := kv.Get(ctx, "ring")
	if err != nil {
		t.Fatal(err)
	}
	var ring struct {
		Keys []struct {
			ID        string `json:"kid"`
			Seed      []byte `json:"seed"`
			Sealed    string `json:"sealed"`
			Activated int64  `json:"activated"`
			Retired   int64  `json:"retired"`
			Revoked   int64  `json:"revoked"`
		} `json:"keys"`
	}
	if err := json.Unmarshal(e.Value(), &ring); err != nil {
		t.Fatal(err)
	}
	key, err := seal.Load(filepath.Join(s.Daemon.Spec.DataDir(), "encryption.key"))
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range ring.Keys {
		if k.Activated == 0 || k.Retired != 0 || k.Revoked != 0 {
			continue
		}
		if len(k.Seed) != 0 {
			t.Fatal("the key ring stores a plaintext seed in NATS")
		}
		seed, err := key.Open(k.Sealed, "edgepass key ring: signing key "+k.ID)
		if err != nil {
			t.Fatalf("open the leaked seed: %v", err)
		}
		return k.ID, ed25519.NewKeyFromSeed(seed)
	}
	t.Fatal("no active signing key in the ring")
	return "", nil
}

// Attack: the signing key leaks (or an old one is kept by someone). A token
// minted with it for a long life is refused by every edge (the daemon
// publishes the longest lifetime it issues); a plausible one works until the
// operator runs `edgepass keys revoke <kid>`, after which every edge
// refuses it within a second and the sessions it signed are ended.
func TestLeakedKeyIsBoundedAndRevocable(t *testing.T) {
	s := external(t)
	alice := signIn(t, s, harness.AliceUser, harness.AlicePassword)
	kid, leaked := leakSigningKey(t, s)
	if alice.claims.Kid != kid {
		t.Fatalf("alice's token is signed by %s, the active key is %s", alice.claims.Kid, kid)
	}
	admins := harness.PathAdmins + "/leaked-key"
	longLived := mint(t, s.Daemon.PublicURL, kid, leaked, 100*24*time.Hour)
	mustStatus(t, s.Traefiks, admins, bearer(longLived), http.StatusUnauthorized, "a 100-day token minted with the leaked key")
	plausible := mint(t, s.Daemon.PublicURL, kid, leaked, 30*time.Minute)
	mustStatus(t, s.Traefiks, admins, bearer(plausible), http.StatusOK, "a plausible token minted with the leaked key, before the revocation")

	out := cli(t, s.Daemon, "keys", "revoke", kid)
	start := time.Now()
	took := waitStatus(t, s, s.Traefiks, admins, bearer(plausible), http.StatusUnauthorized, 10*time.Second, "key revocation")
	t.Logf("keys revoke → every edge refuses (%s after the CLI returned): %s; CLI said: %s", time.Since(start).Round(time.Millisecond), formatDurations(took), strings.TrimSpace(out))
	for name, d := range took {
		if d > time.Second {
			t.Errorf("%s refused the revoked key's token after %s, want within 1s", name, d)
		}
	}
	mustStatus(t, s.Traefiks, harness.PathApp+"/after-key-revoke", bearer(alice.token), http.StatusUnauthorized, "alice's session signed with the revoked key")
	if list := cli(t, s.Daemon, "sessions", "list", "--json"); strings.Contains(list, alice.claims.SessionID) {
		t.Errorf("alice's session signed with the revoked key is still stored:\n%s", list)
	}
	again := signIn(t, s, harness.AliceUser, harness.AlicePassword)
	if again.claims.Kid == kid {
		t.Fatal("the daemon still signs with the revoked key")
	}
	mustStatus(t, s.Traefiks, harness.PathApp+"/signed-in-again", bearer(again.token), http.StatusOK, "a new session after the key revocation")
}

// jsRequest sends a JetStream API request and decodes the reply, failing on
// an API error.
func jsRequest(t *testing.T, nc *nats.Conn, subject string, req, resp any) {
	t.Helper()
	var body []byte
	if req != nil {
		body, _ = json.Marshal(req)
	}
	msg, err := nc.Request(subject, body, 5*time.Second)
	if err != nil {
		t.Fatalf("%s: %v", subject, err)
	}
	var apiErr struct {
		Error *struct {
			Description string `json:"description"`
		} `json:"error"`
	}
	_ = json.Unmarshal(msg.Data, &apiErr)
	if apiErr.Error != nil {
		t.Fatalf("%s: %s", subject, apiErr.Error.Description)
	}
	if resp != nil {
		if err := json.Unmarshal(msg.Data, resp); err != nil {
			t.Fatalf("%s: %v", subject, err)
		}
	}
}

// Attack: someone with enough NATS rights deletes an edge's consumer and
// points a heartbeat-only consumer at its deliver subject, so the edge goes
// on hearing heartbeats — and reporting itself synced — while revocations
// no longer reach it. The edge cross-checks the stream's last sequence and
// resyncs; the revocation issued during the attack then applies.
func TestHijackedConsumerIsDetectedAndResynced(t *testing.T) {
	s := external(t)
	victim := s.Traefiks[0]
	nc, js := asDaemon(t, s)
	ctx := ctxFor(t, 90*time.Second)
	stream, err := js.Stream(ctx, "KV_"+natsedge.DefaultBucket)
	if err != nil {
		t.Fatal(err)
	}
	var target *jetstream.ConsumerInfo
	if _, err := harness.WaitEvery(200*time.Millisecond, 15*time.Second, func() (bool, string) {
		infos := stream.ListConsumers(ctx)
		for ci := range infos.Info() {
			// The edge's live consumer: the whole bucket, a subscriber
			// on its deliver subject (not a snapshot or lingering one).
			if strings.HasSuffix(ci.Config.Description, " "+victim.Spec.Name) && ci.Config.DeliverSubject != "" &&
				ci.Config.FilterSubject == "$KV."+natsedge.DefaultBucket+".>" && ci.PushBound {
				target = ci
			}
		}
		if err := infos.Err(); err != nil && !errors.Is(err, jetstream.ErrEndOfData) {
			t.Fatal(err)
		}
		return target != nil, ""
	}); err != nil {
		t.Fatalf("no consumer of %s on the edge stream: %v", victim.Spec.Name, err)
	}
	bob := signIn(t, s, harness.BobUser, harness.BobPassword)
	path := harness.PathApp + "/hijack"
	mustStatus(t, s.Traefiks, path, bearer(bob.token), http.StatusOK, "before the hijack")

	streamName := "KV_" + natsedge.DefaultBucket
	jsRequest(t, nc, "$JS.API.CONSUMER.DELETE."+streamName+"."+target.Name, nil, nil)
	fake := map[string]any{
		"stream_name": streamName,
		"config": map[string]any{
			"name": "hijack", "deliver_subject": target.Config.DeliverSubject, "deliver_policy": "new",
			"filter_subject": "$KV." + natsedge.DefaultBucket + ".nothing.here", "ack_policy": "none",
			"idle_heartbeat": int64(time.Second), "flow_control": true, "mem_storage": true,
		},
	}
	jsRequest(t, nc, "$JS.API.CONSUMER.CREATE."+streamName+".hijack", fake, nil)
	t.Cleanup(func() { _, _ = nc.Request("$JS.API.CONSUMER.DELETE."+streamName+".hijack", nil, 2*time.Second) })

	cli(t, s.Daemon, "sessions", "revoke", bob.claims.SessionID)
	// Within two cross-check intervals (10 s each), plus the resync.
	took := waitStatus(t, s, []*harness.Traefik{victim}, path, bearer(bob.token), http.StatusUnauthorized, 2*natsedge.DefaultCrossCheckInterval+5*time.Second, "revocation after the hijack")
	t.Logf("hijacked edge applied the revocation after %s", formatDurations(took))
	if !victim.LogContains("recreating it from sequence") {
		t.Errorf("the victim's log does not say it detected the hijack:\n%s", victim.Tail(20))
	}
}
