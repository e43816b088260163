package deploy

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/edgepass/edgepass/integration/harness"
)

var (
	clusterOnce sync.Once
	theCluster  *cluster
	clusterErr  error
	clusterSkip string
	cleanupMu   sync.Mutex
	cleanups    []func()
)

func TestMain(m *testing.M) {
	code := m.Run()
	cleanupMu.Lock()
	for i := len(cleanups) - 1; i >= 0; i-- {
		cleanups[i]()
	}
	cleanupMu.Unlock()
	os.Exit(code)
}

func atExit(f func()) {
	cleanupMu.Lock()
	cleanups = append(cleanups, f)
	cleanupMu.Unlock()
}

// node is one nats-server of the manifest's StatefulSet, run locally.
type node struct {
	name                     string // the pod name
	client, cluster, monitor int    // ports on 127.0.0.1
	dir                      string
	proc                     *harness.Proc
}

// cluster is the manifest's NATS StatefulSet run as local processes: the
// ConfigMap's nats.conf and the container's environment, with only what must
// differ on one machine replaced (listen addresses and ports, the routes'
// host names, the mounted files' paths, pod names).
type cluster struct {
	b           *base
	n           *natsSetup
	bin         string
	dir         string
	ca          *ca
	certDir     string
	nodes       []*node
	conf        map[string]any // node 0's localized configuration, parsed
	tls         bool           // the client port requires TLS
	clusterName string
	routeURL    string // the manifest's route to node 0, localized (with its credentials)
	clusterTLS  map[string]any
	bucket      string
	replicas    int

	mu     sync.Mutex
	rogues []*harness.Proc
}

// liveCluster starts the cluster once for the package; tests skip when
// nats-server cannot be built.
func liveCluster(t *testing.T) *cluster {
	t.Helper()
	clusterOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		bin, err := harness.NATSServerBin(ctx, t.Logf)
		if err != nil {
			clusterSkip = fmt.Sprintf("nats-server cannot be built, so the manifests' NATS configuration cannot run here: %v", err)
			return
		}
		theCluster, clusterErr = startCluster(t, bin)
	})
	if clusterSkip != "" {
		t.Skip(clusterSkip)
	}
	if clusterErr != nil {
		t.Fatalf("the manifests' NATS cluster does not run: %v", clusterErr)
	}
	if theCluster == nil {
		t.Fatal("the manifests' NATS cluster failed to start in an earlier test (see its failure)")
	}
	return theCluster
}

func startCluster(t *testing.T, bin string) (*cluster, error) {
	start := time.Now()
	b, err := readBase(deployDir(t))
	if err != nil {
		return nil, err
	}
	c := &cluster{b: b, n: loadNATS(t, b), bin: bin}
	c.bucket = str(daemonConfig(t, b), "nats", "edgeBucket")
	if c.bucket == "" {
		c.bucket = "edgepass_edge"
	}
	c.replicas = c.n.replicas
	if c.dir, err = os.MkdirTemp("", "edgepass-deploy-"); err != nil {
		return nil, err
	}
	keep := os.Getenv("EDGEPASS_KEEP") != ""
	atExit(func() {
		c.stop()
		if !keep {
			os.RemoveAll(c.dir)
		}
	})

	// The TLS material cert-manager would issue (Secret nats-tls: tls.crt,
	// tls.key, ca.crt), for 127.0.0.1.
	if c.ca, err = newCA("edgepass NATS test CA"); err != nil {
		return nil, err
	}
	c.certDir = filepath.Join(c.dir, "certs")
	if err := c.ca.issue("nats", filepath.Join(c.certDir, "tls.crt"), filepath.Join(c.certDir, "tls.key")); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(c.certDir, "ca.crt"), c.ca.certPEM, 0o644); err != nil {
		return nil, err
	}

	for i := 0; i < c.n.replicas; i++ {
		nd := &node{name: c.n.podName(i), dir: filepath.Join(c.dir, c.n.podName(i))}
		for _, p := range []*int{&nd.client, &nd.cluster, &nd.monitor} {
			if *p, err = harness.FreePort(); err != nil {
				return nil, err
			}
		}
		c.nodes = append(c.nodes, nd)
	}
	for i := range c.nodes {
		if err := c.startNode(i); err != nil {
			return nil, err
		}
	}

	// What the manifest's configuration is, as node 0 reads it.
	_, env, err := c.nodeEnv(0)
	if err != nil {
		return nil, err
	}
	text, err := c.localizeConf(0)
	if err != nil {
		return nil, err
	}
	m, err := parseConf(text, env)
	if err != nil {
		return nil, err
	}
	c.conf = lower(m).(map[string]any)
	c.tls = get(c.conf, "tls") != nil
	c.clusterName = str(c.conf, "cluster", "name")
	c.clusterTLS, _ = get(c.conf, "cluster", "tls").(map[string]any)
	for _, r := range confStrings(get(c.conf, "cluster", "routes")) {
		if strings.Contains(r, "127.0.0.1:"+strconv.Itoa(c.nodes[0].cluster)) {
			c.routeURL = r
		}
	}
	if c.routeURL == "" {
		return nil, fmt.Errorf("no route of the manifest leads to %s", c.nodes[0].name)
	}

	// The cluster works: the daemon user creates the edge bucket with the
	// manifest's replica count once JetStream has a meta leader, and every
	// replica of its stream is current.
	user, pass, err := c.daemonCredentials(t)
	if err != nil {
		return nil, err
	}
	nc, err := c.connect(0, nats.UserInfo(user, pass))
	if err != nil {
		return nil, fmt.Errorf("the daemon cannot connect: %w", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	var kv jetstream.KeyValue
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		kv, err = js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: c.bucket, Replicas: c.replicas})
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("cannot create the R%d bucket %s as the daemon within 30s (no JetStream meta leader?): %v\n%s", c.replicas, c.bucket, err, c.logs())
		}
		time.Sleep(250 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := kv.Put(ctx, "keys", []byte(`"a test fact"`)); err != nil {
		return nil, fmt.Errorf("put into %s: %v", c.bucket, err)
	}
	for {
		s, err := js.Stream(ctx, "KV_"+c.bucket)
		if err == nil {
			ci := s.CachedInfo().Cluster
			current := 0
			if ci != nil {
				for _, r := range ci.Replicas {
					if r.Current {
						current++
					}
				}
			}
			if ci != nil && ci.Leader != "" && current == c.replicas-1 {
				break
			}
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("stream KV_%s never had %d current replicas: %v", c.bucket, c.replicas, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("the manifests' NATS: %d nodes up, R%d bucket %s created, in %s", len(c.nodes), c.replicas, c.bucket, time.Since(start).Round(time.Millisecond))
	return c, nil
}

func (c *cluster) stop() {
	c.mu.Lock()
	procs := append([]*harness.Proc(nil), c.rogues...)
	c.mu.Unlock()
	for _, nd := range c.nodes {
		if nd.proc != nil {
			procs = append(procs, nd.proc)
		}
	}
	for _, p := range procs {
		_ = p.Stop(5 * time.Second)
	}
}

func (c *cluster) logs() string {
	var sb strings.Builder
	for _, nd := range c.nodes {
		if nd.proc != nil {
			fmt.Fprintf(&sb, "--- %s (%s):\n%s\n", nd.name, nd.proc.Spec.LogPath, nd.proc.Tail(15))
		}
	}
	return sb.String()
}

// nodeEnv is pod i's environment with the routes' host names made local.
func (c *cluster) nodeEnv(i int) ([]string, map[string]string, error) {
	order, vals, err := c.n.podEnv(i)
	if err != nil {
		return nil, nil, err
	}
	for k, v := range vals {
		if vals[k], err = c.localizeHosts(v); err != nil {
			return nil, nil, fmt.Errorf("env %s: %w", k, err)
		}
	}
	return order, vals, nil
}

// localizeHosts replaces <statefulset>-<i>.<service>[.…]:<port> with node
// i's cluster address on 127.0.0.1.
func (c *cluster) localizeHosts(s string) (string, error) {
	re := regexp.MustCompile(regexp.QuoteMeta(name(c.n.sts)) + `-(\d+)\.` + regexp.QuoteMeta(str(c.n.sts, "spec", "serviceName")) + `(?:\.[A-Za-z0-9-]+)*:(\d+)`)
	var bad error
	out := re.ReplaceAllStringFunc(s, func(m string) string {
		sm := re.FindStringSubmatch(m)
		i, _ := strconv.Atoi(sm[1])
		if i >= len(c.nodes) {
			bad = fmt.Errorf("%s names pod %d of a %d-replica StatefulSet", m, i, len(c.nodes))
			return m
		}
		if sm[2] != "6222" {
			bad = fmt.Errorf("%s: only the route port 6222 is expected on the pods' names", m)
			return m
		}
		return "127.0.0.1:" + strconv.Itoa(c.nodes[i].cluster)
	})
	return out, bad
}

var listenLine = regexp.MustCompile(`(?m)^(\s*)(listen|http|https|http_port|https_port|monitor_port)(\s*[:=]\s*)"?([^\s"]+)"?`)

// localizeConf is the ConfigMap's nats.conf for node i: listen addresses on
// 127.0.0.1 with the node's ports (4222 client, 6222 cluster, 8222
// monitoring), the routes' host names local, and the mounted directories
// replaced by local ones (the Secret's TLS files by the test's).
func (c *cluster) localizeConf(i int) (string, error) {
	nd := c.nodes[i]
	text, err := c.localizeHosts(c.n.conf)
	if err != nil {
		return "", err
	}
	var bad error
	text = listenLine.ReplaceAllStringFunc(text, func(m string) string {
		sm := listenLine.FindStringSubmatch(m)
		port := sm[4]
		if j := strings.LastIndex(port, ":"); j >= 0 {
			port = port[j+1:]
		}
		local := map[string]int{"4222": nd.client, "6222": nd.cluster, "8222": nd.monitor}[port]
		if local == 0 {
			bad = fmt.Errorf("nats.conf line %q: port %s is not one the test maps (4222, 6222, 8222)", strings.TrimSpace(m), port)
			return m
		}
		v := "127.0.0.1:" + strconv.Itoa(local)
		if strings.HasSuffix(sm[2], "_port") {
			v = strconv.Itoa(local)
		}
		return sm[1] + sm[2] + sm[3] + v
	})
	if bad != nil {
		return "", bad
	}
	// Mounted directories.
	type mnt struct{ path, local string }
	var mounts []mnt
	for _, m := range list(c.n.w.container["volumeMounts"]) {
		mo, _ := m.(obj)
		mp := strings.TrimSuffix(str(mo, "mountPath"), "/")
		vol := c.n.w.volume(str(mo, "name"))
		var local string
		switch {
		case vol != nil && (get(vol, "secret") != nil || get(vol, "projected") != nil):
			local = c.certDir // the TLS Secret: the test's certificates
		default:
			local = filepath.Join(nd.dir, str(mo, "name")) // volumeClaimTemplate, emptyDir, config
		}
		if err := os.MkdirAll(local, 0o755); err != nil {
			return "", err
		}
		mounts = append(mounts, mnt{mp, local})
	}
	sort.Slice(mounts, func(a, b int) bool { return len(mounts[a].path) > len(mounts[b].path) })
	for _, m := range mounts {
		text = strings.ReplaceAll(text, m.path+"/", m.local+"/")
	}
	return text, nil
}

func (c *cluster) startNode(i int) error {
	nd := c.nodes[i]
	text, err := c.localizeConf(i)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(nd.dir, 0o755); err != nil {
		return err
	}
	confFile := filepath.Join(nd.dir, "nats.conf")
	if err := os.WriteFile(confFile, []byte(text), 0o600); err != nil {
		return err
	}
	order, vals, err := c.nodeEnv(i)
	if err != nil {
		return err
	}
	var env []string
	for _, k := range order {
		env = append(env, k+"="+vals[k])
	}
	nd.proc, err = harness.StartNATSConf(harness.NATSConfSpec{
		Name:       nd.name,
		Bin:        c.bin,
		Conf:       confFile,
		Env:        env,
		LogPath:    filepath.Join(nd.dir, "nats.log"),
		ClientPort: nd.client,
		Ports:      []int{nd.cluster, nd.monitor},
	})
	return err
}

// connect opens a client connection to node i the way the manifests' clients
// do (TLS with the CA when the server requires it).
func (c *cluster) connect(i int, opts ...nats.Option) (*nats.Conn, error) {
	base := []nats.Option{nats.NoReconnect(), nats.Timeout(3 * time.Second), nats.Name("deploy-test")}
	if c.tls {
		base = append(base, nats.Secure(&tls.Config{RootCAs: c.ca.pool(), MinVersion: tls.VersionTLS12}))
	}
	return nats.Connect("nats://127.0.0.1:"+strconv.Itoa(c.nodes[i].client), append(base, opts...)...)
}

// confUser finds a user of the configuration's authorization block.
func confUser(m map[string]any, user string) map[string]any {
	for _, u := range list(get(m, "authorization", "users")) {
		if uo, ok := u.(map[string]any); ok && str(uo, "user") == user {
			return uo
		}
	}
	return nil
}

func (c *cluster) daemonCredentials(t testing.TB) (string, string, error) {
	user := str(daemonConfig(t, c.b), "nats", "user")
	u := confUser(c.conf, user)
	if u == nil {
		return "", "", fmt.Errorf("the daemon's NATS user %q is not in nats.conf", user)
	}
	return user, str(u, "password"), nil
}

// routez lists the remote server ids and names node i has routes to.
func (c *cluster) routez(i int) (map[string]bool, error) {
	var rz struct {
		Routes []struct {
			RemoteID   string `json:"remote_id"`
			RemoteName string `json:"remote_name"`
		} `json:"routes"`
	}
	if err := getJSON(c.nodes[i].monitor, "/routez", &rz); err != nil {
		return nil, err
	}
	out := map[string]bool{}
	for _, r := range rz.Routes {
		out[r.RemoteID] = true
		out[r.RemoteName] = true
	}
	return out, nil
}

func getJSON(port int, path string, v any) error {
	cl := http.Client{Timeout: 2 * time.Second}
	resp, err := cl.Get("http://127.0.0.1:" + strconv.Itoa(port) + path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// peer is a nats-server that is not part of the manifests' StatefulSet.
type peer struct {
	name                     string
	client, cluster, monitor int
	proc                     *harness.Proc
	id                       string
}

// startPeer runs a server of the attacker's making (anonymous clients, no
// JetStream) whose cluster block routes to node 0's route port with routeURL
// and tlsBlock ("" = no TLS).
func (c *cluster) startPeer(pname, routeURL, tlsBlock string) (*peer, error) {
	p := &peer{name: pname}
	var err error
	for _, port := range []*int{&p.client, &p.cluster, &p.monitor} {
		if *port, err = harness.FreePort(); err != nil {
			return nil, err
		}
	}
	dir := filepath.Join(c.dir, pname)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	text := fmt.Sprintf(`# a server that is not one of the manifest's
server_name: %q
listen: "127.0.0.1:%d"
http: "127.0.0.1:%d"
debug: true
cluster {
  name: %q
  listen: "127.0.0.1:%d"
  routes: [%q]
%s}
`, pname, p.client, p.monitor, c.clusterName, p.cluster, routeURL, tlsBlock)
	conf := filepath.Join(dir, "nats.conf")
	if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
		return nil, err
	}
	p.proc, err = harness.StartNATSConf(harness.NATSConfSpec{
		Name: pname, Bin: c.bin, Conf: conf, LogPath: filepath.Join(dir, "nats.log"),
		ClientPort: p.client, Ports: []int{p.cluster, p.monitor},
	})
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.rogues = append(c.rogues, p.proc)
	c.mu.Unlock()
	var vz struct {
		ID string `json:"server_id"`
	}
	if err := getJSON(p.monitor, "/varz", &vz); err != nil {
		return nil, err
	}
	p.id = vz.ID
	return p, nil
}

func tlsBlock(cert, key, ca string) string {
	return fmt.Sprintf("  tls {\n    cert_file: %q\n    key_file: %q\n    ca_file: %q\n    timeout: 3\n  }\n", cert, key, ca)
}

// joined reports whether the peer got into the cluster, and how it shows:
// a node of the manifest has a route to it, or an anonymous client of the
// peer reaches the cluster's JetStream (the edge stream's INFO answers).
func (c *cluster) joined(p *peer, nc *nats.Conn) (bool, string) {
	for i := range c.nodes {
		rz, err := c.routez(i)
		if err == nil && (rz[p.id] || rz[p.name]) {
			return true, fmt.Sprintf("%s lists a route to %s in /routez", c.nodes[i].name, p.name)
		}
	}
	msg, err := nc.Request("$JS.API.STREAM.INFO.KV_"+c.bucket, nil, 500*time.Millisecond)
	if err == nil {
		return true, fmt.Sprintf("an anonymous client of %s read the stream's INFO through it: %.200s", p.name, msg.Data)
	}
	return false, ""
}
