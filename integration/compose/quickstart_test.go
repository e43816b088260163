package compose

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"
	"gopkg.in/yaml.v3"

	"github.com/edgepass/edgepass/daemon/config"
	"github.com/edgepass/edgepass/integration/harness"
)

// Service names of deploy/compose/docker-compose.yml.
const (
	svcTraefik = "traefik"
	svcDaemon  = "edgepass"
	svcEdge    = "edge-credentials"
	svcDex     = "dex"
	svcApp     = "whoami"
)

// whoamiPort is where traefik/whoami listens without flags (its --port
// default).
const whoamiPort = 80

// quickstartUsers are the quickstart's users and the passwords README.md
// gives; dex.yaml holds only their bcrypt hashes (checked against these).
var quickstartUsers = map[string]string{
	"alice@example.com": "alice-password",
	"bob@example.com":   "bob-password",
}

// quickstart is deploy/compose, loaded: the compose project (as Docker
// Compose reads it) and each configuration file it mounts.
type quickstart struct {
	repo, dir string
	project   *types.Project
	// Raw texts, as mounted.
	staticRaw, dynamicRaw, daemonRaw, dexRaw []byte
	static                                   traefikStatic
	dynamic                                  traefikDynamic
	dex                                      dexConfig
	// daemon is edgepass.yml as the daemon loads it (validated), with the
	// environment compose gives the daemon's container.
	daemon *config.Configuration
}

// traefikStatic is the part of Traefik's static configuration the
// quickstart uses; decoding is strict, so anything else fails the test.
type traefikStatic struct {
	Global struct {
		CheckNewVersion    bool `yaml:"checkNewVersion"`
		SendAnonymousUsage bool `yaml:"sendAnonymousUsage"`
	} `yaml:"global"`
	EntryPoints map[string]struct {
		Address string `yaml:"address"`
	} `yaml:"entryPoints"`
	Log struct {
		Level string `yaml:"level"`
	} `yaml:"log"`
	Providers struct {
		File struct {
			Filename string `yaml:"filename"`
		} `yaml:"file"`
	} `yaml:"providers"`
	Experimental struct {
		LocalPlugins map[string]struct {
			ModuleName string `yaml:"moduleName"`
		} `yaml:"localPlugins"`
	} `yaml:"experimental"`
}

// traefikDynamic is the quickstart's dynamic configuration (strict).
type traefikDynamic struct {
	HTTP struct {
		Routers map[string]struct {
			Rule        string   `yaml:"rule"`
			EntryPoints []string `yaml:"entryPoints"`
			Middlewares []string `yaml:"middlewares"`
			Service     string   `yaml:"service"`
		} `yaml:"routers"`
		Middlewares map[string]struct {
			Plugin map[string]pluginSettings `yaml:"plugin"`
		} `yaml:"middlewares"`
		Services map[string]struct {
			LoadBalancer struct {
				Servers []struct {
					URL string `yaml:"url"`
				} `yaml:"servers"`
			} `yaml:"loadBalancer"`
		} `yaml:"services"`
	} `yaml:"http"`
}

// pluginSettings are the edgepass middleware settings the quickstart sets
// (the plugin itself refuses unknown ones; the run test loads them in
// Traefik).
type pluginSettings struct {
	LoginURL      string   `yaml:"loginURL"`
	Issuer        string   `yaml:"issuer"`
	TrustAnchors  []string `yaml:"trustAnchors"`
	AllowedGroups []string `yaml:"allowedGroups"`
	UserHeader    string   `yaml:"userHeader"`
	EmailHeader   string   `yaml:"emailHeader"`
	GroupsHeader  string   `yaml:"groupsHeader"`
	NameHeader    string   `yaml:"nameHeader"`
	NATS          struct {
		URLs         []string `yaml:"urls"`
		User         string   `yaml:"user"`
		PasswordFile string   `yaml:"passwordFile"`
	} `yaml:"nats"`
}

// dexConfig is the part of Dex's configuration the quickstart uses (strict:
// a misspelled field such as preferedUsername fails here).
type dexConfig struct {
	Issuer  string `yaml:"issuer"`
	Storage struct {
		Type string `yaml:"type"`
	} `yaml:"storage"`
	Web struct {
		HTTP string `yaml:"http"`
	} `yaml:"web"`
	OAuth2 struct {
		SkipApprovalScreen bool `yaml:"skipApprovalScreen"`
	} `yaml:"oauth2"`
	StaticClients []struct {
		ID           string   `yaml:"id"`
		Name         string   `yaml:"name"`
		Secret       string   `yaml:"secret"`
		SecretEnv    string   `yaml:"secretEnv"`
		RedirectURIs []string `yaml:"redirectURIs"`
	} `yaml:"staticClients"`
	EnablePasswordDB bool `yaml:"enablePasswordDB"`
	StaticPasswords  []struct {
		Email             string   `yaml:"email"`
		Hash              string   `yaml:"hash"`
		Username          string   `yaml:"username"`
		Name              string   `yaml:"name"`
		PreferredUsername string   `yaml:"preferredUsername"`
		UserID            string   `yaml:"userID"`
		Groups            []string `yaml:"groups"`
	} `yaml:"staticPasswords"`
}

// loadQuickstart loads deploy/compose with compose-go (the compose
// specification's loader, schema validation on) and decodes every file it
// mounts.
func loadQuickstart(t *testing.T) *quickstart {
	t.Helper()
	repo, err := harness.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	q := &quickstart{repo: repo, dir: filepath.Join(repo, "deploy", "compose")}
	composeFile := filepath.Join(q.dir, "docker-compose.yml")
	data, err := os.ReadFile(composeFile)
	if err != nil {
		t.Fatal(err)
	}
	// No variables from the tester's environment: the file's defaults.
	q.project, err = loader.LoadWithContext(context.Background(), types.ConfigDetails{
		WorkingDir:  q.dir,
		ConfigFiles: []types.ConfigFile{{Filename: composeFile, Content: data}},
		Environment: types.Mapping{},
	}, func(o *loader.Options) {
		o.ResolvePaths = true
	})
	if err != nil {
		t.Fatalf("docker-compose.yml does not load as Docker Compose would: %v", err)
	}

	q.staticRaw = q.mountedFile(t, svcTraefik, "traefik.yml")
	q.dynamicRaw = q.mountedFile(t, svcTraefik, "dynamic.yml")
	q.daemonRaw = q.mountedFile(t, svcDaemon, "edgepass.yml")
	q.dexRaw = q.mountedFile(t, svcDex, "dex.yaml")
	strict(t, "traefik.yml", q.staticRaw, &q.static)
	strict(t, "dynamic.yml", q.dynamicRaw, &q.dynamic)
	strict(t, "dex.yaml", q.dexRaw, &q.dex)

	env := q.environ(t, svcDaemon)
	q.daemon, err = config.Load([]string{"--configFile=" + filepath.Join(q.dir, "edgepass.yml")}, env)
	if err != nil {
		t.Fatalf("edgepass.yml with the daemon container's environment does not load in the daemon: %v", err)
	}
	return q
}

// strict decodes YAML refusing fields v does not have.
func strict(t *testing.T, name string, data []byte, v any) {
	t.Helper()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
}

func (q *quickstart) service(t *testing.T, name string) types.ServiceConfig {
	t.Helper()
	s, ok := q.project.Services[name]
	if !ok {
		t.Fatalf("docker-compose.yml has no service %q", name)
	}
	return s
}

// mountedFile reads the file of deploy/compose that service mounts, by its
// name in deploy/compose, failing when it is not mounted.
func (q *quickstart) mountedFile(t *testing.T, service, name string) []byte {
	t.Helper()
	if _, ok := q.mount(t, service, filepath.Join(q.dir, name)); !ok {
		t.Fatalf("service %s does not mount deploy/compose/%s", service, name)
	}
	data, err := os.ReadFile(filepath.Join(q.dir, name))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// mount finds service's mount of source (an absolute path or a volume
// name) and returns it.
func (q *quickstart) mount(t *testing.T, service, source string) (types.ServiceVolumeConfig, bool) {
	t.Helper()
	for _, v := range q.service(t, service).Volumes {
		if v.Source == source {
			return v, true
		}
	}
	return types.ServiceVolumeConfig{}, false
}

// mountTarget is where service mounts source; the test fails without it.
func (q *quickstart) mountTarget(t *testing.T, service, source string) string {
	t.Helper()
	v, ok := q.mount(t, service, source)
	if !ok {
		t.Fatalf("service %s does not mount %s", service, source)
	}
	return v.Target
}

// environ is service's environment as KEY=value lines.
func (q *quickstart) environ(t *testing.T, service string) []string {
	t.Helper()
	var out []string
	for k, v := range q.service(t, service).Environment {
		if v == nil || *v == "" {
			t.Fatalf("service %s: %s has no value (a variable without a default?)", service, k)
		}
		out = append(out, k+"="+*v)
	}
	slices.Sort(out)
	return out
}

// envValue is one variable of service's environment.
func (q *quickstart) envValue(t *testing.T, service, key string) string {
	t.Helper()
	v := q.service(t, service).Environment[key]
	if v == nil || *v == "" {
		t.Fatalf("service %s has no %s", service, key)
	}
	return *v
}

// script is the shell script a service's entrypoint runs (/bin/sh -c …).
func (q *quickstart) script(t *testing.T, service string) string {
	t.Helper()
	ep := q.service(t, service).Entrypoint
	if len(ep) != 3 || ep[0] != "/bin/sh" || ep[1] != "-c" {
		t.Fatalf("service %s: entrypoint %q, want [/bin/sh -c <script>]", service, ep)
	}
	return ep[2]
}

// published is the host port and address a service publishes for target.
func (q *quickstart) published(t *testing.T, service string, target int) (hostIP string, port int) {
	t.Helper()
	for _, p := range q.service(t, service).Ports {
		if int(p.Target) == target {
			n, err := strconv.Atoi(p.Published)
			if err != nil {
				t.Fatalf("service %s: published port %q", service, p.Published)
			}
			return p.HostIP, n
		}
	}
	t.Fatalf("service %s does not publish container port %d", service, target)
	return "", 0
}

// portOf is the port of a host:port listen address or of a URL.
func portOf(t *testing.T, addr string) int {
	t.Helper()
	hostport := addr
	if u, err := url.Parse(addr); err == nil && u.Scheme != "" && u.Host != "" {
		hostport = u.Host
	}
	_, p, err := net.SplitHostPort(hostport)
	if err != nil {
		t.Fatalf("%q has no port: %v", addr, err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatalf("%q: port %q", addr, p)
	}
	return n
}

func hostOf(t *testing.T, rawURL string) string {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil || u.Host == "" {
		t.Fatalf("%q is not an absolute URL", rawURL)
	}
	return u.Hostname()
}

// plugin returns the edgepass settings of middleware name.
func (q *quickstart) plugin(t *testing.T, name string) pluginSettings {
	t.Helper()
	m, ok := q.dynamic.HTTP.Middlewares[name]
	if !ok {
		t.Fatalf("dynamic.yml has no middleware %q", name)
	}
	p, ok := m.Plugin["edgepass"]
	if !ok {
		t.Fatalf("dynamic.yml: middleware %q is not the edgepass plugin", name)
	}
	return p
}

// pluginMiddlewares are the names of the edgepass middlewares, sorted.
func (q *quickstart) pluginMiddlewares() []string {
	var out []string
	for name, m := range q.dynamic.HTTP.Middlewares {
		if _, ok := m.Plugin["edgepass"]; ok {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// rewriter turns the quickstart's addresses and container paths into the
// test's: every URL, host:port and absolute path in a configuration must
// have a mapping, so nothing silently keeps pointing at a container.
type rewriter struct {
	urls  map[string]string // URL prefix (scheme://host:port[/path]) -> replacement
	addrs map[string]string // listen host:port -> 127.0.0.1:port
	hosts map[string]string // bare host name -> replacement
	paths map[string]string // absolute container path (prefix) -> local path
}

// value rewrites one configuration value.
func (r *rewriter) value(s string) (string, error) {
	if u, err := url.Parse(s); err == nil && u.Scheme != "" && u.Host != "" {
		v, ok := replacePrefix(r.urls, s)
		if !ok {
			return "", fmt.Errorf("no test address for URL %q", s)
		}
		return v, nil
	}
	if h, p, err := net.SplitHostPort(s); err == nil && p != "" && !strings.ContainsAny(s, "/ ") {
		if _, err := strconv.Atoi(p); err == nil {
			v, ok := r.addrs[s]
			if !ok {
				return "", fmt.Errorf("no test address for %q (host %q)", s, h)
			}
			return v, nil
		}
	}
	if strings.HasPrefix(s, "/") {
		v, ok := replacePrefix(r.paths, s)
		if !ok {
			return "", fmt.Errorf("no test path for %q", s)
		}
		return v, nil
	}
	if v, ok := r.hosts[s]; ok {
		return v, nil
	}
	return s, nil
}

// replacePrefix replaces the longest prefix of s that m maps (the whole of
// s, or a prefix followed by "/") with its mapping; false when none matches.
func replacePrefix(m map[string]string, s string) (string, bool) {
	best := ""
	for prefix := range m {
		if (s == prefix || strings.HasPrefix(s, prefix+"/")) && len(prefix) > len(best) {
			best = prefix
		}
	}
	if best == "" {
		return "", false
	}
	return m[best] + strings.TrimPrefix(s, best), true
}

// yaml rewrites every value (not key) of a YAML document.
func (r *rewriter) yaml(data []byte) ([]byte, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, err
	}
	var errs []string
	var walk func(n *yaml.Node)
	walk = func(n *yaml.Node) {
		switch n.Kind {
		case yaml.DocumentNode, yaml.SequenceNode:
			for _, c := range n.Content {
				walk(c)
			}
		case yaml.MappingNode:
			for i := 1; i < len(n.Content); i += 2 {
				walk(n.Content[i])
			}
		case yaml.ScalarNode:
			if n.Tag != "!!str" {
				return
			}
			v, err := r.value(n.Value)
			if err != nil {
				errs = append(errs, fmt.Sprintf("line %d: %v", n.Line, err))
				return
			}
			n.Value = v
		}
	}
	walk(&doc)
	if len(errs) > 0 {
		return nil, fmt.Errorf("rewrite: %s", strings.Join(errs, "; "))
	}
	return yaml.Marshal(&doc)
}

// script rewrites the container paths of a shell script: each mount target
// (longest first) where it starts a path.
func (r *rewriter) script(s string) string {
	targets := make([]string, 0, len(r.paths))
	for p := range r.paths {
		targets = append(targets, p)
	}
	slices.SortFunc(targets, func(a, b string) int { return len(b) - len(a) })
	var out strings.Builder
	for i := 0; i < len(s); {
		replaced := false
		if s[i] == '/' && (i == 0 || !isPathByte(s[i-1])) {
			for _, p := range targets {
				if strings.HasPrefix(s[i:], p) && (i+len(p) == len(s) || !isPathByte(s[i+len(p)]) || s[i+len(p)] == '/') {
					out.WriteString(r.paths[p])
					i += len(p)
					replaced = true
					break
				}
			}
		}
		if !replaced {
			out.WriteByte(s[i])
			i++
		}
	}
	return out.String()
}

func isPathByte(c byte) bool {
	return c == '/' || c == '.' || c == '-' || c == '_' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}
