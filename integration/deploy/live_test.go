package deploy

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/edgepass/edgepass/plugin/natsedge"
)

// TestRogueRouteIsRefused: a nats-server that is not one of the manifest's
// routes to a node's cluster port; it must never join (had it joined, its
// anonymous clients would read the signing keys and write edge facts through
// it). The control case — the manifest's own route credentials and TLS
// files — must join, which shows the refusals come from the route
// authorization and TLS, not from a broken test setup.
func TestRogueRouteIsRefused(t *testing.T) {
	c := liveCluster(t)
	dir := filepath.Join(c.dir, "rogue-certs")
	rogueCA, err := newCA("rogue CA")
	if err != nil {
		t.Fatal(err)
	}
	// A certificate of the cluster's own CA (a leaked one, say) and one of
	// the attacker's CA; both rogues trust the cluster's CA so that their
	// side of the handshake succeeds.
	if err := c.ca.issue("rogue", filepath.Join(dir, "trusted.crt"), filepath.Join(dir, "trusted.key")); err != nil {
		t.Fatal(err)
	}
	if err := rogueCA.issue("rogue", filepath.Join(dir, "untrusted.crt"), filepath.Join(dir, "untrusted.key")); err != nil {
		t.Fatal(err)
	}
	bundle := filepath.Join(dir, "bundle.crt")
	if err := os.WriteFile(bundle, append(append([]byte{}, c.ca.certPEM...), rogueCA.certPEM...), 0o644); err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(c.certDir, "ca.crt")
	route := fmt.Sprintf("nats://127.0.0.1:%d", c.nodes[0].cluster)
	wrongPassword := fmt.Sprintf("nats://%s:wrong-password@127.0.0.1:%d", routeUser(c), c.nodes[0].cluster)
	var manifestTLS string
	if c.clusterTLS != nil {
		manifestTLS = tlsBlock(str(c.clusterTLS, "cert_file"), str(c.clusterTLS, "key_file"), str(c.clusterTLS, "ca_file"))
	}

	cases := []struct {
		name     string
		route    string
		tls      string
		wantJoin bool
		wantLog  string // the refusal the rogue must have been told
	}{
		{name: "plain route without credentials", route: route},
		{name: "TLS route with an untrusted certificate, no credentials", route: route,
			tls: tlsBlock(filepath.Join(dir, "untrusted.crt"), filepath.Join(dir, "untrusted.key"), bundle)},
		{name: "TLS route with a certificate of the cluster's CA, no credentials", route: route,
			tls: tlsBlock(filepath.Join(dir, "trusted.crt"), filepath.Join(dir, "trusted.key"), caFile), wantLog: "Authorization Violation"},
		{name: "TLS route with a certificate of the cluster's CA, wrong password", route: wrongPassword,
			tls: tlsBlock(filepath.Join(dir, "trusted.crt"), filepath.Join(dir, "trusted.key"), caFile), wantLog: "Authorization Violation"},
		{name: "control: the manifest's route credentials and TLS files join", route: c.routeURL, tls: manifestTLS, wantJoin: true},
	}
	// How long a rogue keeps trying: nats-server retries a route every
	// second, so several attempts.
	const window = 4 * time.Second
	for i, tc := range cases {
		i, tc := i, tc
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p, err := c.startPeer(fmt.Sprintf("rogue-%d", i), tc.route, tc.tls)
			if err != nil {
				t.Fatal(err)
			}
			nc, err := nats.Connect(fmt.Sprintf("nats://127.0.0.1:%d", p.client), nats.NoReconnect())
			if err != nil {
				t.Fatalf("connect to the rogue's own client port: %v", err)
			}
			defer nc.Close()
			deadline := time.Now().Add(window)
			if tc.wantJoin {
				deadline = time.Now().Add(15 * time.Second) // it returns as soon as it joined
			}
			for {
				ok, how := c.joined(p, nc)
				if ok && tc.wantJoin {
					return
				}
				if ok {
					t.Fatalf("the rogue joined the cluster: %s\nrogue log:\n%s\n%s", how, p.proc.Tail(20), c.logs())
				}
				if time.Now().After(deadline) {
					break
				}
				time.Sleep(200 * time.Millisecond)
			}
			if tc.wantJoin {
				t.Fatalf("the control peer, with the manifest's own route URL and TLS files, did not join within 15s: the test cannot tell a refusal from a broken setup\ncontrol log:\n%s\n%s", p.proc.Tail(30), c.logs())
			}
			if !p.proc.LogContains("Trying to connect to route") {
				t.Fatalf("the rogue never tried its route, so the test proves nothing; its log:\n%s", p.proc.Tail(30))
			}
			if tc.wantLog != "" && !p.proc.LogContains(tc.wantLog) {
				t.Errorf("the rogue was kept out, but its log has no %q (the route authorization should refuse it even past TLS):\n%s", tc.wantLog, p.proc.Tail(30))
			}
			t.Logf("refused for %s; the rogue's last log lines:\n%s", window, p.proc.Tail(4))
		})
	}
}

func routeUser(c *cluster) string {
	if u := str(c.conf, "cluster", "authorization", "user"); u != "" {
		return u
	}
	return "route"
}

// TestAnonymousClientRefused: no client gets in without a user of the
// configuration, on any node (no no_auth_user, no anonymous listener).
func TestAnonymousClientRefused(t *testing.T) {
	n := loadNATS(t, loadBase(t))
	m := n.parsedConf(t)
	if path := findKey(m, "no_auth_user"); path != "" {
		t.Errorf("nats.conf sets %s: clients without credentials get that user", path)
	}
	if get(m, "authorization") == nil && get(m, "accounts") == nil {
		t.Errorf("nats.conf has no authorization block: every client is anonymous")
	}
	c := liveCluster(t)
	edgeUser, edgePassword := edgeCredentials(t, c.b)
	cases := []struct {
		name   string
		opts   []nats.Option
		plain  bool   // connect without TLS even if the server requires it
		want   string // error substring; "" = must connect
		anyErr bool   // any refusal will do
	}{
		{name: "no credentials", want: "authorization violation"},
		{name: "no credentials and no TLS", plain: true, anyErr: true},
		{name: "edge user with a wrong password", opts: []nats.Option{nats.UserInfo(edgeUser, "wrong-password")}, want: "authorization violation"},
		{name: "the route credentials as a client", opts: []nats.Option{nats.UserInfo(routeUser(c), str(c.conf, "cluster", "authorization", "password"))}, want: "authorization violation"},
		{name: "control: the edge credentials Traefik mounts", opts: []nats.Option{nats.UserInfo(edgeUser, edgePassword)}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for i, nd := range c.nodes {
				var nc *nats.Conn
				var err error
				if tc.plain {
					nc, err = nats.Connect(fmt.Sprintf("nats://127.0.0.1:%d", nd.client), append([]nats.Option{nats.NoReconnect(), nats.Timeout(3 * time.Second)}, tc.opts...)...)
				} else {
					nc, err = c.connect(i, tc.opts...)
				}
				if nc != nil {
					nc.Close()
				}
				switch {
				case tc.want == "" && !tc.anyErr:
					if err != nil {
						t.Errorf("%s: %v", nd.name, err)
					}
				case err == nil:
					t.Errorf("%s: connected", nd.name)
				case tc.want != "" && !strings.Contains(strings.ToLower(err.Error()), tc.want):
					t.Errorf("%s: refused with %q, want %q", nd.name, err, tc.want)
				}
			}
		})
	}
}

// findKey returns the path of the first map key named k in v ("" if none).
func findKey(v any, k string) string {
	switch x := v.(type) {
	case map[string]any:
		for kk, e := range x {
			if kk == k {
				return kk
			}
			if p := findKey(e, k); p != "" {
				return kk + "." + p
			}
		}
	case []any:
		for i, e := range x {
			if p := findKey(e, k); p != "" {
				return fmt.Sprintf("[%d].%s", i, p)
			}
		}
	}
	return ""
}

// TestEdgeUserHasExactlyEdgePermissions: the manifest's edge user has
// exactly natsedge.EdgePermissions(bucket, edge) — the contract — and, run
// by nats-server, those permissions let the edge do its work and nothing
// else.
func TestEdgeUserHasExactlyEdgePermissions(t *testing.T) {
	b := loadBase(t)
	n := loadNATS(t, b)
	m := n.parsedConf(t)
	bucket := str(daemonConfig(t, b), "nats", "edgeBucket")
	if bucket != "edgepass_edge" {
		t.Errorf("the daemon's nats.edgeBucket is %q, want edgepass_edge", bucket)
	}
	mws := middlewares(b)
	if len(mws) == 0 {
		t.Fatal("the base has no Middleware using plugin.edgepass")
	}
	edgeUser := str(pluginConf(mws[0]), "nats", "user")
	if edgeUser != "traefik" {
		t.Errorf("the Middleware's nats.user is %q, want traefik", edgeUser)
	}
	edge := edgeName(t, b)
	if edge != edgeUser {
		t.Errorf("the Middleware's edge name %q differs from its user %q", edge, edgeUser)
	}
	wantPub, wantSub := natsedge.EdgePermissions(bucket, edge)
	u := confUser(m, edgeUser)
	if u == nil {
		t.Fatalf("nats.conf has no user %q (the Middleware's nats.user)", edgeUser)
	}
	perms, _ := get(u, "permissions").(map[string]any)
	for k := range perms {
		if k != "publish" && k != "subscribe" {
			t.Errorf("user %s: unexpected permissions key %q", edgeUser, k)
		}
	}
	for _, dir := range []struct {
		name string
		want []string
	}{{"publish", wantPub}, {"subscribe", wantSub}} {
		p := get(perms, dir.name)
		var got []string
		switch x := p.(type) {
		case map[string]any:
			for k := range x {
				if k != "allow" {
					t.Errorf("user %s: %s has %q, want only allow", edgeUser, dir.name, k)
				}
			}
			got = confStrings(x["allow"])
		default:
			got = confStrings(x) // a bare list means allow
		}
		missing, extra := setDiff(dir.want, got)
		for _, s := range missing {
			t.Errorf("user %s: %s allow lacks %q (natsedge.EdgePermissions)", edgeUser, dir.name, s)
		}
		for _, s := range extra {
			t.Errorf("user %s: %s allow has %q, which natsedge.EdgePermissions does not grant", edgeUser, dir.name, s)
		}
	}
	if t.Failed() {
		return
	}

	// The same, enforced by nats-server.
	c := liveCluster(t)
	_, password := edgeCredentials(t, b)
	var mu sync.Mutex
	var asyncErrs []string
	nc, err := c.connect(1, nats.UserInfo(edgeUser, password), nats.CustomInboxPrefix(natsedge.InboxPrefix(edge)),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			mu.Lock()
			asyncErrs = append(asyncErrs, err.Error())
			mu.Unlock()
		}))
	if err != nil {
		t.Fatalf("the edge cannot connect with the password Traefik mounts: %v", err)
	}
	defer nc.Close()
	stream := "KV_" + bucket

	// Allowed: the stream's INFO, its own consumer and the delivery to its
	// inbox.
	msg, err := nc.Request("$JS.API.STREAM.INFO."+stream, nil, 3*time.Second)
	if err != nil {
		t.Fatalf("STREAM.INFO %s: %v", stream, err)
	}
	var info struct {
		Config struct{ Name string } `json:"config"`
		Error  any                   `json:"error"`
	}
	if err := json.Unmarshal(msg.Data, &info); err != nil || info.Config.Name != stream {
		t.Fatalf("STREAM.INFO %s answered %s (%v)", stream, msg.Data, err)
	}
	deliver := natsedge.InboxPrefix(edge) + ".deliver"
	sub, err := nc.SubscribeSync(deliver)
	if err != nil {
		t.Fatal(err)
	}
	consumer := natsedge.ConsumerName(edge, 0)
	create, _ := json.Marshal(map[string]any{
		"stream_name": stream,
		"action":      "create",
		"config": map[string]any{
			"name": consumer, "deliver_subject": deliver, "deliver_policy": "last_per_subject",
			"ack_policy": "none", "filter_subject": "$KV." + bucket + ".>", "flow_control": true,
			"idle_heartbeat": int64(5 * time.Second), "mem_storage": true, "inactive_threshold": int64(30 * time.Second),
		},
	})
	msg, err = nc.Request("$JS.API.CONSUMER.CREATE."+stream+"."+consumer, create, 3*time.Second)
	if err != nil {
		t.Fatalf("create consumer %s: %v", consumer, err)
	}
	if err := json.Unmarshal(msg.Data, &info); err != nil || info.Error != nil {
		t.Fatalf("create consumer %s answered %s", consumer, msg.Data)
	}
	m1, err := sub.NextMsg(3 * time.Second)
	if err != nil {
		t.Fatalf("the edge's consumer delivered nothing to %s: %v", deliver, err)
	}
	if m1.Subject != "$KV."+bucket+".keys" {
		t.Errorf("delivery on %s, want $KV.%s.keys", m1.Subject, bucket)
	}
	if _, err := nc.Request("$JS.API.CONSUMER.DELETE."+stream+"."+consumer, nil, 3*time.Second); err != nil {
		t.Errorf("delete consumer %s: %v", consumer, err)
	}

	// Refused: each must come back as a permissions violation.
	denied := []struct {
		what, subject string
		subscribe     bool
	}{
		{"every inbox", "_INBOX.>", true},
		{"another edge's inbox", natsedge.InboxPrefix("other") + ".>", true},
		{"writing an edge fact", "$KV." + bucket + ".keys", false},
		{"the sessions stream", "$JS.API.STREAM.INFO.KV_edgepass_sessions", false},
		{"the signing keys' stream", "$JS.API.STREAM.INFO.KV_edgepass_keys", false},
		{"another edge's consumer", "$JS.API.CONSUMER.CREATE." + stream + "." + natsedge.ConsumerName("other", 0), false},
		{"an ephemeral consumer", "$JS.API.CONSUMER.CREATE." + stream, false},
		{"consumer INFO (reveals deliver subjects)", "$JS.API.CONSUMER.INFO." + stream + "." + consumer, false},
		{"consumer LIST", "$JS.API.CONSUMER.LIST." + stream, false},
		{"a direct get on the sessions stream", "$JS.API.DIRECT.GET.KV_edgepass_sessions", false},
		{"a direct get by subject", "$JS.API.DIRECT.GET." + stream + ".$KV." + bucket + ".keys", false},
		{"another edge's heartbeat", natsedge.HeartbeatSubject(bucket, "other"), false},
	}
	for _, d := range denied {
		if d.subscribe {
			if _, err := nc.SubscribeSync(d.subject); err != nil {
				t.Errorf("%s: subscribe %s: %v", d.what, d.subject, err)
			}
		} else if err := nc.Publish(d.subject, []byte("{}")); err != nil {
			t.Errorf("%s: publish %s: %v", d.what, d.subject, err)
		}
	}
	_ = nc.FlushTimeout(3 * time.Second)
	deadline := time.Now().Add(3 * time.Second)
	for _, d := range denied {
		want := fmt.Sprintf("permissions violation for publish to %q", d.subject)
		if d.subscribe {
			want = fmt.Sprintf("permissions violation for subscription to %q", d.subject)
		}
		for {
			mu.Lock()
			found := false
			for _, e := range asyncErrs {
				if strings.Contains(strings.ToLower(e), strings.ToLower(want)) {
					found = true
				}
			}
			mu.Unlock()
			if found {
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("%s: no %s from the server", d.what, want)
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	mu.Lock()
	for _, e := range asyncErrs {
		if strings.Contains(e, "STREAM.INFO."+stream+`"`) || strings.Contains(e, consumer+`"`) && strings.Contains(e, "CREATE") {
			t.Errorf("an allowed operation was refused: %s", e)
		}
	}
	mu.Unlock()
}

func setDiff(want, got []string) (missing, extra []string) {
	w, g := map[string]bool{}, map[string]bool{}
	for _, s := range want {
		w[s] = true
	}
	for _, s := range got {
		g[s] = true
		if !w[s] {
			extra = append(extra, s)
		}
	}
	for _, s := range want {
		if !g[s] {
			missing = append(missing, s)
		}
	}
	return missing, extra
}

// TestEdgeSyncsWithTheMiddlewareSettings: the plugin's own NATS client
// (natsedge, run natively), configured as the Middleware configures it —
// tls:// URLs, nats.caFile, nats.user and the password file Traefik mounts —
// syncs the edge bucket from the manifests' cluster and reports its
// heartbeat, without a single permissions violation.
func TestEdgeSyncsWithTheMiddlewareSettings(t *testing.T) {
	c := liveCluster(t)
	mws := middlewares(c.b)
	if len(mws) == 0 {
		t.Fatal("the base has no Middleware using plugin.edgepass")
	}
	pc := pluginConf(mws[0])
	user, password := edgeCredentials(t, c.b)
	pwFile := filepath.Join(t.TempDir(), "nats-password")
	if err := os.WriteFile(pwFile, []byte(password), 0o600); err != nil {
		t.Fatal(err)
	}
	// The Service in front of the pods: every node, with the manifest's scheme.
	var urls []string
	for _, u := range confStrings(get(pc, "nats", "urls")) {
		scheme := "nats"
		if i := strings.Index(u, "://"); i > 0 {
			scheme = u[:i]
		}
		for _, nd := range c.nodes {
			urls = append(urls, fmt.Sprintf("%s://127.0.0.1:%d", scheme, nd.client))
		}
	}
	bucket := str(pc, "nats", "bucket")
	if bucket == "" {
		bucket = natsedge.DefaultBucket
	}
	edge := edgeName(t, c.b)
	var mu sync.Mutex
	var logs []string
	cfg := natsedge.Config{
		URLs: urls, Bucket: bucket, User: user, PasswordFile: pwFile,
		CAFile: filepath.Join(c.certDir, "ca.crt"), EdgeName: str(pc, "nats", "edgeName"),
		ReplicaID: "deploy-test",
		Logf: func(format string, args ...any) {
			mu.Lock()
			logs = append(logs, fmt.Sprintf(format, args...))
			mu.Unlock()
		},
	}
	if str(pc, "nats", "caFile") == "" {
		cfg.CAFile = ""
	}

	// The daemon listens for heartbeats.
	dUser, dPass, err := c.daemonCredentials(t)
	if err != nil {
		t.Fatal(err)
	}
	dc, err := c.connect(2, nats.UserInfo(dUser, dPass))
	if err != nil {
		t.Fatal(err)
	}
	defer dc.Close()
	beats, err := dc.SubscribeSync(natsedge.HeartbeatWildcard(bucket))
	if err != nil {
		t.Fatal(err)
	}
	if err := dc.Flush(); err != nil {
		t.Fatal(err)
	}

	w, err := natsedge.Shared(cfg)
	if err != nil {
		t.Fatalf("the Middleware's NATS settings are refused: %v", err)
	}
	defer w.Close()
	deadline := time.Now().Add(15 * time.Second)
	for !w.State().Synced() {
		if time.Now().After(deadline) {
			mu.Lock()
			t.Fatalf("the edge did not sync within 15s; stats %+v; log:\n%s", w.Stats(), strings.Join(logs, "\n"))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if st := w.Stats(); st.ConsumersCreated == 0 || st.Delivered == 0 {
		t.Errorf("synced without a consumer or a delivery: %+v", st)
	}
	hb, err := beats.NextMsg(10 * time.Second)
	if err != nil {
		t.Fatalf("no heartbeat reached the daemon: %v", err)
	}
	if hb.Subject != natsedge.HeartbeatSubject(bucket, edge) {
		t.Errorf("heartbeat on %s, want %s", hb.Subject, natsedge.HeartbeatSubject(bucket, edge))
	}
	mu.Lock()
	defer mu.Unlock()
	for _, l := range logs {
		if strings.Contains(strings.ToLower(l), "permission") {
			t.Errorf("the edge hit a permissions violation: %s", l)
		}
	}
}
