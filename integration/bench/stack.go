package bench

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/edgepass/edgepass/integration/harness"
	"github.com/edgepass/edgepass/plugin/natsedge"
)

// Variant is one way of serving the same backend through the same Traefik.
type Variant struct {
	// Name is what the report calls it.
	Name string
	// Path is the route's path prefix on the shared entrypoint.
	Path string
	// Router is the router's name in Traefik's API.
	Router string
	// Authenticated means the route refuses requests without a session and
	// passes identity headers to the backend.
	Authenticated bool
	// Floor is the calibration plugin: no session check, constant
	// identity headers.
	Floor bool
	// Assertion: the backend also gets an identity assertion, which the
	// echo backend verifies (CheckRoutes checks it did).
	Assertion bool
}

// The three routes of the benchmark, all on the same entrypoint and backend.
var (
	NoMiddleware = Variant{Name: "no-middleware", Path: "/none", Router: "bench-none@file"}
	Plugin       = Variant{Name: "plugin", Path: "/plugin", Router: "bench-plugin@file", Authenticated: true}
	ForwardAuth  = Variant{Name: "forwardauth", Path: "/forwardauth", Router: "bench-forwardauth@file", Authenticated: true}
	Variants     = []Variant{NoMiddleware, Plugin, ForwardAuth}
	// YaegiFloor is an optional fourth route: the least any Yaegi plugin
	// that sets identity headers can do (delete the three headers, set
	// three constants, call next), the floor under the edgepass plugin.
	YaegiFloor = Variant{Name: "yaegi-floor", Path: "/floor", Router: "bench-floor@file", Floor: true}
	// PluginAssertion is the plugin with assertionHeader: the same
	// middleware plus a signed identity assertion for the backend (minted
	// by the daemon once per token, renewed in the background). Every run
	// measures it beside Plugin.
	PluginAssertion = Variant{Name: "plugin+assertion", Path: "/asserted", Router: "bench-asserted@file", Authenticated: true, Assertion: true}
)

// FloorModule is the calibration plugin's module name.
const FloorModule = "github.com/edgepass/benchfloor"

// floorSource is the calibration plugin, as DESIGN.md's "trivial Yaegi
// plugin" but setting the same three headers the edgepass route sets.
const floorSource = `// Package benchfloor is the edgepass benchmark's calibration plugin.
package benchfloor

import (
	"context"
	"net/http"
)

// Config names the user the constant identity headers claim.
type Config struct {
	User string
}

// CreateConfig returns the defaults.
func CreateConfig() *Config { return &Config{User: "alice"} }

type floor struct {
	next                http.Handler
	user, email, groups []string
}

// New builds the middleware.
func New(ctx context.Context, next http.Handler, config *Config, name string) (http.Handler, error) {
	return &floor{next: next, user: []string{config.User}, email: []string{config.User + "@example.com"}, groups: []string{"staff,admins"}}, nil
}

func (f *floor) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	h := r.Header
	delete(h, "X-Auth-User")
	delete(h, "X-Auth-Email")
	delete(h, "X-Auth-Groups")
	h["X-Auth-User"] = f.user
	h["X-Auth-Email"] = f.email
	h["X-Auth-Groups"] = f.groups
	f.next.ServeHTTP(rw, r)
}
`

// writeFloorPlugin puts the calibration plugin where Traefik's
// localPlugins finds it.
func writeFloorPlugin(dir string) error {
	root := filepath.Join(dir, "plugins-local", "src", filepath.FromSlash(FloorModule))
	files := map[string]string{
		"go.mod":       "module " + FloorModule + "\n\ngo 1.21\n",
		".traefik.yml": "displayName: edgepass benchmark floor\ntype: middleware\nimport: " + FloorModule + "\nsummary: calibration plugin of the edgepass benchmark\ntestData:\n  user: alice\n",
		"floor.go":     floorSource,
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		return err
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(root, name), []byte(data), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// ReplicaID is the benchmark Traefik's NATS heartbeat id.
const ReplicaID = "bench-traefik"

// DynamicConfig renders the benchmark's file-provider configuration: one echo
// service, three routers, the plugin injecting user/email/groups and
// ForwardAuth to the daemon's /verify copying the same three headers.
func DynamicConfig(echoURL, verifyURL string, edge harness.PluginOptions, floor bool) string {
	router := func(v Variant, mw string) string {
		s := fmt.Sprintf("    %s:\n      rule: \"PathPrefix(`%s`)\"\n      entryPoints: [web]\n      service: echo\n",
			strings.TrimSuffix(v.Router, "@file"), v.Path)
		if mw != "" {
			s += "      middlewares: [" + mw + "]\n"
		}
		return s
	}
	floorRouter, floorMiddleware := "", ""
	if floor {
		floorRouter = router(YaegiFloor, "floor")
		floorMiddleware = "    floor:\n      plugin:\n        floor:\n          user: alice\n"
	}
	// The plugin's two middlewares differ in the assertion settings only.
	plugin := func(name, extra string) string {
		return fmt.Sprintf(`
    %s:
      plugin:
        edgepass:
          loginURL: %q
          issuer: %q
          userHeader: %s
          emailHeader: %s
          groupsHeader: %s
          trustAnchors: [%q]
%s          nats:
            urls: [%q]
            user: %q
            passwordFile: %q
            bucket: %s
            replicaID: %s`, name, edge.LoginURL, edge.Issuer, harness.HeaderUser, harness.HeaderEmail, harness.HeaderGroups,
			edge.TrustAnchor, extra, edge.NATSURLs[0], edge.NATSUser, edge.NATSPasswordFile, natsedge.DefaultBucket, ReplicaID)
	}
	return "# generated by the edgepass benchmark (integration/bench)\nhttp:\n  routers:\n" +
		router(NoMiddleware, "") + router(Plugin, "edgepass") + router(PluginAssertion, "edgepass-asserted") + router(ForwardAuth, "forwardauth") + floorRouter +
		"  middlewares:\n" + floorMiddleware +
		plugin("edgepass", "") +
		plugin("edgepass-asserted", fmt.Sprintf("          assertionHeader: X-Edgepass-Assertion\n          assertionAudience: %q\n", harness.AssertionAudience)) +
		fmt.Sprintf(`
    forwardauth:
      forwardAuth:
        address: %q
        authResponseHeaders: [%s, %s, %s]
  services:
    echo:
      loadBalancer:
        servers:
          - url: %q
`, verifyURL, harness.HeaderUser, harness.HeaderEmail, harness.HeaderGroups, echoURL)
}

// Stack is the benchmark's installation on 127.0.0.1: echo, the OIDC
// provider, the daemon with its embedded NATS (a harness stack without
// replicas), and one Traefik serving the variants.
type Stack struct {
	Dir      string
	LogDir   string
	Echo     *harness.Echo
	Provider *harness.Provider
	Daemon   *harness.Daemon
	Traefik  *harness.Traefik
	// TraefikURL is the web entrypoint; APIURL Traefik's API (ping, routers).
	TraefikURL string
	APIURL     string
	// NATS is the daemon-side access to the stack's NATS.
	NATS harness.NATSAccess
	// Debug: Traefik runs with api.debug (profiling endpoints).
	Debug bool
	// Variants are the routes compared, in table order.
	Variants []Variant

	base *harness.Stack
}

// StartStack starts the components in dependency order; on error it stops
// what it started and names the component that failed.
// floor adds the calibration route (YaegiFloor).
func StartStack(bins *harness.Binaries, dir string, floor bool) (s *Stack, err error) {
	s = &Stack{Dir: dir, LogDir: filepath.Join(dir, "logs"), Variants: append(append([]Variant(nil), Variants...), PluginAssertion)}
	if floor {
		s.Variants = append(s.Variants, YaegiFloor)
	}
	defer func() {
		if err != nil {
			s.Close()
			s = nil
		}
	}()
	// Debug logging would tax the /verify path.
	if s.base, err = harness.StartStack(harness.StackOptions{Dir: dir, Bins: bins, DaemonLogLevel: "info"}); err != nil {
		return s, err
	}
	s.Echo, s.Provider, s.Daemon = s.base.Echo, s.base.Provider, s.base.Daemon
	edge := s.base.EdgePluginOptions(ReplicaID)
	s.NATS = s.base.NATSAccess()

	webPort, err := harness.FreePort()
	if err != nil {
		return s, err
	}
	apiPort, err := harness.FreePort()
	if err != nil {
		return s, err
	}
	spec := harness.TraefikSpec{
		Bin:     bins.Traefik,
		Repo:    bins.Repo,
		Dir:     filepath.Join(dir, "traefik"),
		Name:    "traefik",
		Port:    webPort,
		APIPort: apiPort,
		LogDir:  s.LogDir,
		Dynamic: DynamicConfig(s.Echo.URL, s.Daemon.PublicURL+"/verify", edge, floor),
		Routers: variantRouters(s.Variants),
	}
	if floor {
		if err := writeFloorPlugin(spec.Dir); err != nil {
			return s, fmt.Errorf("bench: traefik: write the floor plugin: %w", err)
		}
		spec.Plugins = map[string]string{"floor": FloorModule}
	}
	if s.Traefik, err = harness.StartTraefik(spec); err != nil {
		return s, err
	}
	// The base stack stops it and includes it in its diagnostics.
	s.base.Traefiks = append(s.base.Traefiks, s.Traefik)
	s.TraefikURL, s.APIURL = s.Traefik.URL, s.Traefik.APIURL
	return s, nil
}

// RestartTraefikDebug restarts Traefik, same ports and routes, with its
// debug endpoints on, for profiles and heap readings.
func (s *Stack) RestartTraefikDebug() error {
	s.Traefik.Spec.Debug = true
	if err := s.Traefik.Restart(); err != nil {
		return fmt.Errorf("bench: restart traefik with api.debug: %w", err)
	}
	s.Debug = true
	return nil
}

func variantRouters(variants []Variant) []string {
	var names []string
	for _, v := range variants {
		names = append(names, v.Router)
	}
	return names
}

// pids are the processes whose CPU the throughput runs account.
func (s *Stack) pids() map[string]int {
	return map[string]int{"traefik": s.Traefik.PID(), "echo": s.Echo.PID(), "daemon": s.Daemon.PID()}
}

// Close stops every component, Traefik first.
func (s *Stack) Close() {
	if s != nil {
		s.base.Close()
	}
}

// Diagnostics returns the last log lines of every component.
func (s *Stack) Diagnostics(lines int) string { return s.base.Diagnostics(lines) }
