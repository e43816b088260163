package harness

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// Ports fixes component ports (the demo); zero picks a free port.
type Ports struct {
	Traefik  []int // one per replica; missing entries are picked
	Daemon   int
	Admin    int
	Provider int
	NATS     int // embedded NATS, or the external server
	Echo     int
}

// StackOptions describe a whole edgepass installation on 127.0.0.1.
type StackOptions struct {
	Name string // prefixes component names in errors ("stack1/daemon")
	Dir  string // working directory; logs go to Dir/logs
	Bins *Binaries
	// Replicas is the number of Traefik replicas (0: none, the caller
	// starts its own, as the benchmark does).
	Replicas int
	// ExternalNATS runs a separate nats-server (with the daemon and edge
	// users) instead of the daemon's embedded NATS; the edges reach it
	// through a TCPProxy so a test can cut them off.
	ExternalNATS bool
	EchoHTML     bool
	Ports        Ports
	ClientSecret string // default random
	AdminToken   string // default random
	// DaemonLogLevel is the daemon's log level (default debug).
	DaemonLogLevel string
	// DaemonAdminYAML is DaemonSpec.AdminYAML (the console, named tokens).
	DaemonAdminYAML string
	Logf            func(format string, args ...any)
}

// Stack is a running installation.
type Stack struct {
	Opts     StackOptions
	LogDir   string
	Echo     *Echo
	Provider *Provider
	NATS     *NATSServer // nil with embedded NATS
	// EdgeProxy sits between the edges and the external NATS.
	EdgeProxy *TCPProxy
	Daemon    *Daemon
	Traefiks  []*Traefik

	edgeNATS PluginOptions
	mu       sync.Mutex
}

// RandomSecret returns n random bytes, base64url.
func RandomSecret(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// componentName names a component of the stack named stack ("" for none):
// "stack-name", used in errors and as its log file's name.
func componentName(stack, name string) string {
	if stack == "" {
		return name
	}
	return strings.ReplaceAll(stack+"/"+name, "/", "-")
}

// StartStack starts echo, NATS (external when asked), the provider, the
// daemon and the Traefik replicas, in that order. On error everything already
// started is stopped and the error names the component that failed.
func StartStack(o StackOptions) (s *Stack, err error) {
	if o.ClientSecret == "" {
		o.ClientSecret = RandomSecret(24)
	}
	if o.AdminToken == "" {
		o.AdminToken = RandomSecret(24)
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	s = &Stack{Opts: o, LogDir: filepath.Join(o.Dir, "logs")}
	if err := os.MkdirAll(s.LogDir, 0o755); err != nil {
		return nil, fmt.Errorf("harness: %w", err)
	}
	defer func() {
		if err != nil {
			s.Close()
			s = nil
		}
	}()
	ports := o.Ports
	for _, p := range []*int{&ports.Daemon, &ports.Admin, &ports.Provider, &ports.NATS, &ports.Echo} {
		if *p, err = portOr(*p); err != nil {
			return s, err
		}
	}
	s.Opts.Ports = ports
	start := time.Now()

	s.Echo, err = StartEcho(o.Bins.Echo, ports.Echo, o.EchoHTML, s.LogDir, componentName(o.Name, "echo"), EchoAssertionArgs(baseURL(ports.Daemon))...)
	if err != nil {
		return s, err
	}

	daemonURL := baseURL(ports.Daemon)
	ds := DaemonSpec{
		Bin:            o.Bins.Daemon,
		Dir:            filepath.Join(o.Dir, "daemon"),
		Port:           ports.Daemon,
		AdminPort:      ports.Admin,
		ProviderIssuer: baseURL(ports.Provider),
		ClientSecret:   o.ClientSecret,
		AdminToken:     o.AdminToken,
		LogLevel:       o.DaemonLogLevel,
		AdminYAML:      o.DaemonAdminYAML,
		LogDir:         s.LogDir,
		Name:           componentName(o.Name, "daemon"),
	}
	if o.ExternalNATS {
		monitor, err := FreePort()
		if err != nil {
			return s, err
		}
		proxyPort, err := FreePort()
		if err != nil {
			return s, err
		}
		s.NATS, err = StartNATS(NATSSpec{
			Bin:            o.Bins.NATSServer,
			Dir:            filepath.Join(o.Dir, "nats"),
			Port:           ports.NATS,
			MonitorPort:    monitor,
			DaemonUser:     "daemon",
			DaemonPassword: RandomSecret(18),
			EdgeUser:       "edge",
			EdgePassword:   RandomSecret(18),
			LogDir:         s.LogDir,
			Name:           componentName(o.Name, "nats"),
		})
		if err != nil {
			return s, err
		}
		s.EdgeProxy, err = StartTCPProxy(proxyPort, hostPort(ports.NATS))
		if err != nil {
			return s, err
		}
		ds.NATSURLs = []string{s.NATS.URL}
		ds.NATSUser = s.NATS.Spec.DaemonUser
		if ds.NATSPasswordFile, err = writeSecret(filepath.Join(o.Dir, "secrets"), "nats-daemon.password", s.NATS.Spec.DaemonPassword); err != nil {
			return s, err
		}
		edgePW, err := writeSecret(filepath.Join(o.Dir, "secrets"), "nats-edge.password", s.NATS.Spec.EdgePassword)
		if err != nil {
			return s, err
		}
		s.edgeNATS = PluginOptions{
			NATSURLs:         []string{"nats://" + hostPort(proxyPort)},
			NATSUser:         s.NATS.Spec.EdgeUser,
			NATSPasswordFile: edgePW,
		}
	} else {
		ds.EmbeddedNATSPort = ports.NATS
		s.edgeNATS = PluginOptions{NATSURLs: []string{"nats://" + hostPort(ports.NATS)}, NATSUser: DefaultEdgeName}
	}

	ps := daemonProviderSpec(o.Bins, ports.Provider, o.ClientSecret, daemonURL, s.LogDir, componentName(o.Name, "oidcprovider"))
	// The admin console's, on the admin listener.
	ps.RedirectURIs = append(ps.RedirectURIs, baseURL(ports.Admin)+"/console/callback")
	s.Provider, err = StartProvider(ps)
	if err != nil {
		return s, err
	}

	s.Daemon, err = StartDaemon(ds)
	if err != nil {
		return s, err
	}
	if s.edgeNATS.TrustAnchor, err = s.Daemon.TrustAnchor(); err != nil {
		return s, err
	}
	if !o.ExternalNATS {
		s.edgeNATS.NATSPasswordFile = s.Daemon.EdgePasswordFile(DefaultEdgeName)
	}

	for i := 0; i < o.Replicas; i++ {
		port := 0
		if i < len(ports.Traefik) {
			port = ports.Traefik[i]
		}
		if _, err = s.AddTraefik(port); err != nil {
			return s, err
		}
	}
	o.Logf("harness: %s started in %s (logs in %s)", orDefault(o.Name, "stack"), time.Since(start).Round(time.Millisecond), s.LogDir)
	return s, nil
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

// daemonProviderSpec is the test provider of a stack whose daemon (or
// daemons' balancer) is at daemonURL, with the daemon's URLs registered:
// its /callback, and exactly, as real providers require, its /logged-out
// page (the daemon always sends its own and carries the return URL in
// state) and its back-channel logout endpoint.
func daemonProviderSpec(bins *Binaries, port int, clientSecret, daemonURL, logDir, name string) ProviderSpec {
	return ProviderSpec{
		Node:                   bins.Node,
		Dir:                    bins.Provider,
		Port:                   port,
		ClientSecret:           clientSecret,
		RedirectURIs:           []string{daemonURL + "/callback"},
		PostLogoutRedirectURIs: []string{daemonURL + "/logged-out"},
		BackchannelLogoutURI:   daemonURL + "/backchannel-logout",
		LogDir:                 logDir,
		Name:                   name,
	}
}

// writeSecret writes a secret file (mode 0600) the way an operator
// provisions one, and returns its path.
func writeSecret(dir, name, value string) (string, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("harness: %w", err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(value+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("harness: write %s: %w", p, err)
	}
	return p, nil
}

// EdgePluginOptions is the plugin configuration of the stack's edges.
func (s *Stack) EdgePluginOptions(replicaID string) PluginOptions {
	p := s.edgeNATS
	p.LoginURL = s.Daemon.LoginURL()
	p.Issuer = s.Daemon.PublicURL
	p.ReplicaID = replicaID
	return p
}

// AddTraefik starts one more Traefik replica (port 0 = free port).
func (s *Stack) AddTraefik(port int) (*Traefik, error) {
	var err error
	if port, err = portOr(port); err != nil {
		return nil, err
	}
	api, err := FreePort()
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	n := len(s.Traefiks) + 1
	s.mu.Unlock()
	name := componentName(s.Opts.Name, fmt.Sprintf("traefik-%d", n))
	t, err := StartTraefik(edgeTraefikSpec(s.Opts.Bins, s.Opts.Dir, s.LogDir, name, port, api,
		s.Echo.URL, s.Daemon.PublicURL, s.EdgePluginOptions(name)))
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.Traefiks = append(s.Traefiks, t)
	s.mu.Unlock()
	return t, nil
}

// Close stops every component, Traefik first.
func (s *Stack) Close() {
	if s == nil {
		return
	}
	stopTraefiks(s.Traefiks)
	if s.Daemon != nil {
		stopQuietly(s.Daemon.Proc)
	}
	if s.Provider != nil {
		stopQuietly(s.Provider.Proc)
	}
	if s.EdgeProxy != nil {
		s.EdgeProxy.Close()
	}
	if s.NATS != nil {
		stopQuietly(s.NATS.Proc)
	}
	if s.Echo != nil {
		stopQuietly(s.Echo.Proc)
	}
}

func stopQuietly(p *Proc) {
	if p != nil {
		_ = p.Stop(5 * time.Second)
	}
}

// Procs lists every component process (for diagnostics).
func (s *Stack) Procs() []*Proc {
	var nats []*Proc
	if s.NATS != nil {
		nats = append(nats, s.NATS.Proc)
	}
	var daemons []*Daemon
	if s.Daemon != nil {
		daemons = append(daemons, s.Daemon)
	}
	return componentProcs(s.Echo, nats, s.Provider, daemons, s.Traefiks)
}

// Diagnostics returns the last lines of every component's log.
func (s *Stack) Diagnostics(lines int) string {
	var b strings.Builder
	writeProcLogs(&b, s.Procs(), lines)
	return b.String()
}

// edgeTraefikSpec is an edge replica of a stack: Traefik in dir/name with
// the echo routes, the plugin configured by plugin and the forward-auth
// routes verifying at daemonURL.
func edgeTraefikSpec(bins *Binaries, dir, logDir, name string, port, apiPort int, echoURL, daemonURL string, plugin PluginOptions) TraefikSpec {
	return TraefikSpec{
		Bin:     bins.Traefik,
		Repo:    bins.Repo,
		Dir:     filepath.Join(dir, name),
		Name:    name,
		Port:    port,
		APIPort: apiPort,
		Routes: RoutesSpec{
			EchoURL:   echoURL,
			VerifyURL: daemonURL + "/verify",
			Plugin:    plugin,
		},
		LogDir: logDir,
	}
}

// stopTraefiks stops the replicas, the last started first.
func stopTraefiks(ts []*Traefik) {
	for i := len(ts) - 1; i >= 0; i-- {
		stopQuietly(ts[i].Proc)
	}
}

// componentProcs lists the processes of a stack's components in start
// order, leaving out those not started.
func componentProcs(echo *Echo, nats []*Proc, provider *Provider, daemons []*Daemon, traefiks []*Traefik) []*Proc {
	var ps []*Proc
	add := func(p *Proc) {
		if p != nil {
			ps = append(ps, p)
		}
	}
	if echo != nil {
		add(echo.Proc)
	}
	for _, p := range nats {
		add(p)
	}
	if provider != nil {
		add(provider.Proc)
	}
	for _, d := range daemons {
		add(d.Proc)
	}
	for _, t := range traefiks {
		add(t.Proc)
	}
	return ps
}

// writeProcLogs writes each process's state and the last lines of its log.
func writeProcLogs(b *strings.Builder, procs []*Proc, lines int) {
	for _, p := range procs {
		state := "running"
		if ok, err := p.Exited(); ok {
			state = "exited: " + describeExit(err)
		}
		fmt.Fprintf(b, "--- %s (%s), %s:\n%s\n", p.Spec.Name, state, p.Spec.LogPath, indent(p.Tail(lines)))
	}
}

// RemoveTraefik stops a replica and forgets it (a test that added one).
func (s *Stack) RemoveTraefik(t *Traefik) {
	stopQuietly(t.Proc)
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, x := range s.Traefiks {
		if x == t {
			s.Traefiks = append(s.Traefiks[:i:i], s.Traefiks[i+1:]...)
			return
		}
	}
}
