package harness

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// HAOptions describe an edgepass installation in its high-availability
// shape, on 127.0.0.1: a JetStream cluster (deploy/kubernetes/nats.yaml's
// users and route authorization, buckets with nats.replicas), several daemon
// replicas behind a load balancer (their shared publicURL), the OIDC
// provider, the echo backend and Traefik replicas whose plugin knows every
// NATS node.
type HAOptions struct {
	Name string // prefixes component names ("ha/daemon-1")
	Dir  string // working directory; logs go to Dir/logs
	Bins *Binaries
	// NATSNodes, Daemons and Traefiks count the replicas (defaults 3, 2, 2).
	NATSNodes, Daemons, Traefiks int
	// Replicas is nats.replicas of the daemons (default: NATSNodes).
	Replicas       int
	DaemonLogLevel string // default debug
	Lifetime       string // session.lifetime (default 1h)
	Logf           func(format string, args ...any)
}

// HAStack is a running HA installation.
type HAStack struct {
	Opts     HAOptions
	LogDir   string
	Echo     *Echo
	Provider *Provider
	NATS     *NATSCluster
	// LB is the daemons' publicURL: /login, /callback, /logout and /verify
	// go through it.
	LB      *LoadBalancer
	Daemons []*Daemon
	// Traefiks are the edge replicas (replica ids traefik-1, traefik-2, …).
	Traefiks []*Traefik
	// PublicURL is the daemons' publicURL (the balancer) and token issuer.
	PublicURL  string
	AdminToken string
	// EncryptionKey is the keys.encryptionKeyFile content every daemon
	// replica has (in its own copy of the file).
	EncryptionKey string
	// Plugin is the edges' plugin configuration (without ReplicaID).
	Plugin PluginOptions
}

// HADaemonConfigYAML renders a daemon replica's configuration for the HA
// installation: DaemonConfigYAML's (external NATS, spec.NATSURLs listing
// every node) with publicURL set to the balancer's URL (the issuer and
// redirect URI every replica shares; the replica still listens on
// spec.Port), nats.replicas, and keys.encryptionKeyFile.
func HADaemonConfigYAML(spec DaemonSpec, publicURL string, replicas int, encryptionKeyFile string) (string, error) {
	if spec.EmbeddedNATSPort > 0 {
		return "", errors.New("harness: HA daemon config: replicas share an external NATS cluster, not an embedded server")
	}
	conf := DaemonConfigYAML(spec)
	replace := func(old, with string) error {
		if strings.Count(conf, old) != 1 {
			return fmt.Errorf("harness: HA daemon config: DaemonConfigYAML changed shape: %q found %d times", strings.TrimSpace(old), strings.Count(conf, old))
		}
		conf = strings.Replace(conf, old, with, 1)
		return nil
	}
	if err := replace(fmt.Sprintf("publicURL: %q\n", baseURL(spec.Port)), fmt.Sprintf("publicURL: %q\n", publicURL)); err != nil {
		return "", err
	}
	if err := replace(fmt.Sprintf("  passwordFile: %q\n", spec.NATSPasswordFile),
		fmt.Sprintf("  passwordFile: %q\n  replicas: %d\n", spec.NATSPasswordFile, replicas)); err != nil {
		return "", err
	}
	conf += fmt.Sprintf("keys:\n  encryptionKeyFile: %q\n", encryptionKeyFile)
	return conf, nil
}

// startHADaemon writes the replica's HA configuration and starts it; its
// PublicURL is its own listener (the readiness checks go there, not through
// the balancer).
func startHADaemon(s DaemonSpec, publicURL string, replicas int, encryptionKey string) (*Daemon, error) {
	s = s.withDefaults(publicURL)
	return launchDaemon(s, func() (string, error) {
		// Each replica has its own copy of the key file, as each pod
		// mounts the same Secret.
		keyFile, err := writeSecret(filepath.Join(s.Dir, "secrets"), "encryption.key", encryptionKey)
		if err != nil {
			return "", err
		}
		return HADaemonConfigYAML(s, publicURL, replicas, keyFile)
	})
}

// StartHAStack starts echo, the provider and the NATS cluster (together),
// the balancer, the daemons one after the other (the first creates the
// buckets and the key ring the others join) and the Traefik replicas
// (together). On error everything already started is stopped and the error
// names the component that failed.
func StartHAStack(o HAOptions) (s *HAStack, err error) {
	if o.NATSNodes == 0 {
		o.NATSNodes = 3
	}
	if o.Daemons == 0 {
		o.Daemons = 2
	}
	if o.Traefiks == 0 {
		o.Traefiks = 2
	}
	if o.Replicas == 0 {
		o.Replicas = o.NATSNodes
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	if o.Bins == nil || o.Bins.NATSServer == "" {
		return nil, errors.New("harness: HA stack needs nats-server (BuildOptions.NATSServer)")
	}
	comp := func(name string) string { return componentName(o.Name, name) }
	s = &HAStack{Opts: o, LogDir: filepath.Join(o.Dir, "logs"), AdminToken: RandomSecret(24)}
	if err := os.MkdirAll(s.LogDir, 0o755); err != nil {
		return nil, fmt.Errorf("harness: %w", err)
	}
	defer func() {
		if err != nil {
			s.Close()
			s = nil
		}
	}()
	start := time.Now()
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return s, fmt.Errorf("harness: encryption key: %w", err)
	}
	s.EncryptionKey = base64.StdEncoding.EncodeToString(key)
	clientSecret := RandomSecret(24)
	daemonPW, edgePW := RandomSecret(18), RandomSecret(18)

	ports := func(n int) ([]int, error) {
		var out []int
		for i := 0; i < n; i++ {
			p, err := FreePort()
			if err != nil {
				return nil, err
			}
			out = append(out, p)
		}
		return out, nil
	}
	fixed, err := ports(3) // echo, provider, balancer
	if err != nil {
		return s, err
	}
	echoPort, providerPort, lbPort := fixed[0], fixed[1], fixed[2]
	s.PublicURL = baseURL(lbPort)

	// Echo, the provider and the NATS cluster do not depend on each other.
	var wg sync.WaitGroup
	var echoErr, provErr, natsErr error
	wg.Add(2)
	go func() {
		defer wg.Done()
		s.Echo, echoErr = StartEcho(o.Bins.Echo, echoPort, false, s.LogDir, comp("echo"))
		if echoErr != nil {
			return
		}
		s.Provider, provErr = StartProvider(daemonProviderSpec(o.Bins, providerPort, clientSecret, s.PublicURL, s.LogDir, comp("oidcprovider")))
	}()
	go func() {
		defer wg.Done()
		s.NATS, natsErr = StartNATSCluster(NATSClusterSpec{
			Bin:            o.Bins.NATSServer,
			Dir:            filepath.Join(o.Dir, "nats"),
			Size:           o.NATSNodes,
			DaemonUser:     "daemon",
			DaemonPassword: daemonPW,
			EdgeUser:       DefaultEdgeName,
			EdgePassword:   edgePW,
			LogDir:         s.LogDir,
			Name:           comp("nats"),
		})
	}()
	wg.Wait()
	if err := errors.Join(echoErr, provErr, natsErr); err != nil {
		return s, err
	}
	o.Logf("harness: %s: echo, provider and %d-node NATS cluster up after %s", orDefault(o.Name, "ha"), o.NATSNodes, time.Since(start).Round(time.Millisecond))

	secrets := filepath.Join(o.Dir, "secrets")
	daemonPWFile, err := writeSecret(secrets, "nats-daemon.password", daemonPW)
	if err != nil {
		return s, err
	}
	edgePWFile, err := writeSecret(secrets, "nats-edge.password", edgePW)
	if err != nil {
		return s, err
	}

	specs := make([]DaemonSpec, o.Daemons)
	var backends []LBBackend
	for i := range specs {
		p, err := ports(2)
		if err != nil {
			return s, err
		}
		name := comp(fmt.Sprintf("daemon-%d", i+1))
		specs[i] = DaemonSpec{
			Bin:              o.Bins.Daemon,
			Dir:              filepath.Join(o.Dir, name),
			Port:             p[0],
			AdminPort:        p[1],
			ProviderIssuer:   baseURL(providerPort),
			ClientSecret:     clientSecret,
			AdminToken:       s.AdminToken,
			NATSURLs:         s.NATS.URLs(),
			NATSUser:         "daemon",
			NATSPasswordFile: daemonPWFile,
			Lifetime:         o.Lifetime,
			LogLevel:         o.DaemonLogLevel,
			LogDir:           s.LogDir,
			Name:             name,
		}
		backends = append(backends, LBBackend{Name: name, Addr: hostPort(p[0])})
	}
	if s.LB, err = StartLoadBalancer(lbPort, backends); err != nil {
		return s, err
	}
	for i, spec := range specs {
		d, err := startHADaemon(spec, s.PublicURL, o.Replicas, s.EncryptionKey)
		if err != nil {
			return s, err
		}
		s.Daemons = append(s.Daemons, d)
		o.Logf("harness: %s: %s ready after %s", orDefault(o.Name, "ha"), specs[i].Name, time.Since(start).Round(time.Millisecond))
	}
	anchor, err := s.Daemons[0].TrustAnchor()
	if err != nil {
		return s, err
	}
	for _, d := range s.Daemons[1:] {
		other, err := d.TrustAnchor()
		if err != nil {
			return s, err
		}
		if other != anchor {
			return s, fmt.Errorf("harness: %s has trust anchor %q, %s has %q: the replicas do not share the key ring", s.Daemons[0].Spec.Name, anchor, d.Spec.Name, other)
		}
	}
	s.Plugin = PluginOptions{
		LoginURL:         s.PublicURL + "/login",
		Issuer:           s.PublicURL,
		NATSURLs:         s.NATS.URLs(),
		NATSUser:         DefaultEdgeName,
		NATSPasswordFile: edgePWFile,
		TrustAnchor:      anchor,
	}

	traefiks := make([]*Traefik, o.Traefiks)
	errs := make([]error, o.Traefiks)
	for i := range traefiks {
		p, err := ports(2)
		if err != nil {
			return s, err
		}
		name := comp(fmt.Sprintf("traefik-%d", i+1))
		plugin := s.Plugin
		plugin.ReplicaID = name
		spec := edgeTraefikSpec(o.Bins, o.Dir, s.LogDir, name, p[0], p[1], s.Echo.URL, s.PublicURL, plugin)
		wg.Add(1)
		go func() {
			defer wg.Done()
			traefiks[i], errs[i] = StartTraefik(spec)
		}()
	}
	wg.Wait()
	for _, t := range traefiks {
		if t != nil {
			s.Traefiks = append(s.Traefiks, t)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return s, err
	}
	o.Logf("harness: %s started in %s (logs in %s)", orDefault(o.Name, "ha"), time.Since(start).Round(time.Millisecond), s.LogDir)
	return s, nil
}

// NATSAccess is the daemon user's access to the cluster (every node's URL).
func (s *HAStack) NATSAccess() NATSAccess {
	return NATSAccess{URL: strings.Join(s.NATS.URLs(), ","), User: s.NATS.Spec.DaemonUser, Password: s.NATS.Spec.DaemonPassword}
}

// Daemon returns the replica with that component name (nil if none).
func (s *HAStack) Daemon(name string) *Daemon {
	for _, d := range s.Daemons {
		if d.Spec.Name == name {
			return d
		}
	}
	return nil
}

// Close stops every component, Traefik first.
func (s *HAStack) Close() {
	if s == nil {
		return
	}
	stopTraefiks(s.Traefiks)
	for _, d := range s.Daemons {
		stopQuietly(d.Proc)
	}
	s.LB.Close()
	if s.Provider != nil {
		stopQuietly(s.Provider.Proc)
	}
	s.NATS.Close()
	if s.Echo != nil {
		stopQuietly(s.Echo.Proc)
	}
}

// Procs lists every component process (for diagnostics).
func (s *HAStack) Procs() []*Proc {
	var nats []*Proc
	if s.NATS != nil {
		nats = s.NATS.Procs()
	}
	return componentProcs(s.Echo, nats, s.Provider, s.Daemons, s.Traefiks)
}

// Diagnostics returns the last lines of every component's log and what the
// balancer did.
func (s *HAStack) Diagnostics(lines int) string {
	var b strings.Builder
	writeProcLogs(&b, s.Procs(), lines)
	if s.LB != nil {
		fmt.Fprintf(&b, "--- %s; last requests:\n", s.LB.Summary())
		recs := s.LB.Records("")
		if len(recs) > lines {
			recs = recs[len(recs)-lines:]
		}
		for _, r := range recs {
			fmt.Fprintf(&b, "    %s\n", r)
		}
	}
	return b.String()
}
