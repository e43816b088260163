package compose

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"github.com/edgepass/edgepass/integration/harness"
)

// The quickstart's files agree with each other: what one names (a host, a
// port, a path, a client, a user), the others provide. Docker Compose, Dex
// and the containers themselves do not run here; this is what can be
// checked without them (TestQuickstartRuns runs the rest).
func TestQuickstartFilesAgree(t *testing.T) {
	q := loadQuickstart(t)

	t.Run("every mounted file exists", func(t *testing.T) {
		for name, s := range q.project.Services {
			for _, v := range s.Volumes {
				if v.Type != "bind" {
					if _, ok := q.project.Volumes[v.Source]; !ok {
						t.Errorf("service %s mounts volume %q, which docker-compose.yml does not declare", name, v.Source)
					}
					continue
				}
				if _, err := os.Stat(v.Source); err != nil {
					t.Errorf("service %s mounts %s: %v", name, v.Source, err)
				}
				if !v.ReadOnly {
					t.Errorf("service %s mounts %s read-write; the quickstart's files are read-only", name, v.Source)
				}
			}
		}
	})

	t.Run("the edgepass image builds from deploy/Dockerfile at the repository root", func(t *testing.T) {
		b := q.service(t, svcDaemon).Build
		if b == nil || b.Context != q.repo || b.Dockerfile != "deploy/Dockerfile" {
			t.Fatalf("build %+v, want context %s and dockerfile deploy/Dockerfile", b, q.repo)
		}
		if _, err := os.Stat(filepath.Join(b.Context, b.Dockerfile)); err != nil {
			t.Fatal(err)
		}
		if img := q.service(t, svcDaemon).Image; !strings.HasPrefix(img, "ghcr.io/edgepass/edgepass:") {
			t.Errorf("image %q, want ghcr.io/edgepass/edgepass:<tag>", img)
		}
	})

	t.Run("images", func(t *testing.T) {
		want := map[string]string{svcTraefik: "traefik:v3.6", svcEdge: "traefik:v3.6", svcApp: "traefik/whoami:"}
		for svc, prefix := range want {
			if img := q.service(t, svc).Image; !strings.HasPrefix(img, prefix) {
				t.Errorf("service %s: image %q, want %s…", svc, img, prefix)
			}
		}
		// staticPasswords groups and preferredUsername need Dex v2.45.0+.
		img := q.service(t, svcDex).Image
		minor := -1
		if m := regexp.MustCompile(`^dexidp/dex:v2\.(\d+)\.\d+$`).FindStringSubmatch(img); m != nil {
			minor, _ = strconv.Atoi(m[1])
		}
		if minor < 45 {
			t.Errorf("dex image %q: want a pinned dexidp/dex:v2.45.0 or later (static users' groups)", img)
		}
	})

	t.Run("Traefik loads the plugin from this checkout", func(t *testing.T) {
		plugins := q.static.Experimental.LocalPlugins
		lp, ok := plugins["edgepass"]
		if !ok || len(plugins) != 1 || lp.ModuleName != harness.PluginModule {
			t.Fatalf("localPlugins %+v, want edgepass: {moduleName: %s}", plugins, harness.PluginModule)
		}
		wd := q.service(t, svcTraefik).WorkingDir
		if wd == "" {
			t.Fatal("traefik: set working_dir: Traefik looks for ./plugins-local relative to it")
		}
		base := filepath.Join(wd, "plugins-local", "src", filepath.FromSlash(lp.ModuleName))
		for _, f := range []string{"go.mod", ".traefik.yml", "plugin"} {
			if got := q.mountTarget(t, svcTraefik, filepath.Join(q.repo, f)); got != filepath.Join(base, f) {
				t.Errorf("the repository's %s is mounted at %s, want %s", f, got, filepath.Join(base, f))
			}
		}
		if got := q.mountTarget(t, svcTraefik, filepath.Join(q.dir, "dynamic.yml")); got != q.static.Providers.File.Filename {
			t.Errorf("dynamic.yml is mounted at %s but the file provider reads %s", got, q.static.Providers.File.Filename)
		}
		static := q.mountTarget(t, svcTraefik, filepath.Join(q.dir, "traefik.yml"))
		if !strings.Contains(q.script(t, svcTraefik), "exec traefik --configFile="+static+"\n") {
			t.Errorf("traefik's entrypoint does not start traefik --configFile=%s:\n%s", static, q.script(t, svcTraefik))
		}
	})

	// Ports: inside the compose network and as your browser sees them.
	appPort := portOf(t, q.static.EntryPoints["web"].Address)
	appURL := "http://localhost:" + strconv.Itoa(appPort)
	daemonPort := portOf(t, q.daemon.Listen)
	issuerPort := portOf(t, q.dex.Issuer)

	t.Run("published ports are the ones the URLs use, on loopback only", func(t *testing.T) {
		cases := []struct {
			service, what string
			target, want  int
		}{
			{svcTraefik, "the web entrypoint (app URL " + appURL + ")", appPort, appPort},
			{svcDaemon, "the daemon's listen (publicURL " + q.daemon.PublicURL + ")", daemonPort, portOf(t, q.daemon.PublicURL)},
			{svcDex, "Dex's web.http (issuer " + q.dex.Issuer + ")", portOf(t, q.dex.Web.HTTP), issuerPort},
		}
		for _, c := range cases {
			ip, port := q.published(t, c.service, c.target)
			if port != c.want {
				t.Errorf("service %s publishes %s as host port %d, want %d", c.service, c.what, port, c.want)
			}
			if ip != "127.0.0.1" {
				t.Errorf("service %s publishes port %d on %q; bind it to 127.0.0.1 (a demo with demo secrets)", c.service, port, ip)
			}
		}
		if len(q.service(t, svcApp).Ports) != 0 {
			t.Error("whoami is published directly: it must only be reachable through Traefik")
		}
	})

	t.Run("routers, middlewares and services of the dynamic configuration exist", func(t *testing.T) {
		for name, r := range q.dynamic.HTTP.Routers {
			for _, ep := range r.EntryPoints {
				if _, ok := q.static.EntryPoints[ep]; !ok {
					t.Errorf("router %s uses entrypoint %q, which traefik.yml does not define", name, ep)
				}
			}
			if len(r.Middlewares) == 0 {
				t.Errorf("router %s has no middleware: the app would be unprotected", name)
			}
			for _, m := range r.Middlewares {
				if _, ok := q.dynamic.HTTP.Middlewares[m]; !ok {
					t.Errorf("router %s uses middleware %q, which is not defined", name, m)
				}
			}
			if _, ok := q.dynamic.HTTP.Services[r.Service]; !ok {
				t.Errorf("router %s uses service %q, which is not defined", name, r.Service)
			}
		}
		for name, s := range q.dynamic.HTTP.Services {
			for _, srv := range s.LoadBalancer.Servers {
				if h := hostOf(t, srv.URL); h != svcApp || portOf(t, srv.URL) != whoamiPort {
					t.Errorf("service %s points at %s, want http://%s:%d (the whoami container)", name, srv.URL, svcApp, whoamiPort)
				}
			}
		}
	})

	t.Run("the plugin finds the daemon, its NATS, its credential and its trust anchor", func(t *testing.T) {
		edgeVolumeTarget := q.mountTarget(t, svcTraefik, "edge")
		natsPort := portOf(t, q.daemon.NATS.Embedded.Listen)
		copyScript := q.script(t, svcEdge)
		daemonMount := q.mountTarget(t, svcEdge, "edgepass-data")
		edgeMount := q.mountTarget(t, svcEdge, "edge")
		if got := q.mountTarget(t, svcDaemon, "edgepass-data"); got != q.daemon.DataDir {
			t.Errorf("the daemon's dataDir is %s but its volume is mounted at %s", q.daemon.DataDir, got)
		}
		if v, _ := q.mount(t, svcEdge, "edgepass-data"); !v.ReadOnly {
			t.Error("edge-credentials mounts the daemon's data read-write; read-only is enough")
		}
		if v, _ := q.mount(t, svcTraefik, "edge"); !v.ReadOnly {
			t.Error("traefik mounts the edge volume read-write; read-only is enough")
		}
		if _, ok := q.mount(t, svcTraefik, "edgepass-data"); ok {
			t.Error("traefik mounts the daemon's dataDir: it would see the encryption key and the daemon's NATS password")
		}
		for _, name := range q.pluginMiddlewares() {
			p := q.plugin(t, name)
			if p.LoginURL != q.daemon.PublicURL+"/login" || p.Issuer != q.daemon.PublicURL {
				t.Errorf("%s: loginURL %q issuer %q, want %s/login and %s (the daemon's publicURL)", name, p.LoginURL, p.Issuer, q.daemon.PublicURL, q.daemon.PublicURL)
			}
			if len(p.NATS.URLs) != 1 || hostOf(t, p.NATS.URLs[0]) != svcDaemon || portOf(t, p.NATS.URLs[0]) != natsPort {
				t.Errorf("%s: nats.urls %q, want [nats://%s:%d] (the daemon's embedded NATS)", name, p.NATS.URLs, svcDaemon, natsPort)
			}
			if !slices.Contains(q.daemon.NATS.Embedded.Edges, p.NATS.User) {
				t.Errorf("%s: nats.user %q is not one of the daemon's nats.embedded.edges %q", name, p.NATS.User, q.daemon.NATS.Embedded.Edges)
			}
			pw := p.NATS.User + ".password"
			if p.NATS.PasswordFile != edgeVolumeTarget+"/"+pw {
				t.Errorf("%s: nats.passwordFile %q, want %s/%s (the edge volume)", name, p.NATS.PasswordFile, edgeVolumeTarget, pw)
			}
			if !strings.Contains(copyScript, "cp "+daemonMount+"/credentials/"+pw+" "+edgeMount+"/"+pw+"\n") {
				t.Errorf("edge-credentials does not copy the daemon's credentials/%s to the edge volume:\n%s", pw, copyScript)
			}
			if !slices.Equal(p.TrustAnchors, []string{`{{ env "EDGEPASS_TRUST_ANCHOR" }}`}) {
				t.Errorf("%s: trustAnchors %q, want the template reading EDGEPASS_TRUST_ANCHOR", name, p.TrustAnchors)
			}
			if p.UserHeader == "" || p.GroupsHeader == "" || p.EmailHeader == "" {
				t.Errorf("%s: the demo shows X-Auth-User, X-Auth-Email and X-Auth-Groups; set userHeader, emailHeader, groupsHeader", name)
			}
		}
		// The anchor: the daemon writes <dataDir>/trust-anchor.pub,
		// edge-credentials copies it to the edge volume, Traefik's
		// entrypoint exports it as EDGEPASS_TRUST_ANCHOR.
		if !strings.Contains(copyScript, "cp "+daemonMount+"/trust-anchor.pub "+edgeMount+"/trust-anchor.pub\n") {
			t.Errorf("edge-credentials does not copy trust-anchor.pub:\n%s", copyScript)
		}
		ts := q.script(t, svcTraefik)
		if !strings.Contains(ts, `EDGEPASS_TRUST_ANCHOR="$(cat `+edgeVolumeTarget+`/trust-anchor.pub)"`) || !strings.Contains(ts, "export EDGEPASS_TRUST_ANCHOR\n") {
			t.Errorf("traefik's entrypoint does not export EDGEPASS_TRUST_ANCHOR from %s/trust-anchor.pub:\n%s", edgeVolumeTarget, ts)
		}
		dep := q.service(t, svcTraefik).DependsOn[svcEdge]
		if dep.Condition != "service_completed_successfully" {
			t.Errorf("traefik depends on edge-credentials with condition %q; it must wait until the files are copied (service_completed_successfully)", dep.Condition)
		}
	})

	t.Run("the daemon and Dex agree on the issuer, the client and the redirect URI", func(t *testing.T) {
		if q.daemon.OIDC.Issuer != q.dex.Issuer {
			t.Errorf("oidc.issuer %q, Dex's issuer %q", q.daemon.OIDC.Issuer, q.dex.Issuer)
		}
		// The issuer's host works in the browser (*.localhost) and, as a
		// network alias of Dex, inside the daemon's container.
		h := hostOf(t, q.dex.Issuer)
		if !strings.HasSuffix(h, ".localhost") {
			t.Errorf("issuer host %q: use a *.localhost name, which browsers resolve to this machine", h)
		}
		net := q.service(t, svcDex).Networks["default"]
		if net == nil || !slices.Contains(net.Aliases, h) {
			t.Errorf("Dex has no network alias %q: the daemon could not reach its issuer", h)
		}
		var found bool
		for _, c := range q.dex.StaticClients {
			if c.ID != q.daemon.OIDC.ClientID {
				continue
			}
			found = true
			if c.Secret != "" || c.SecretEnv == "" {
				t.Errorf("Dex client %s: take the secret from secretEnv (one value in docker-compose.yml), not inline", c.ID)
				break
			}
			if got := q.envValue(t, svcDex, c.SecretEnv); got != q.daemon.OIDC.ClientSecret {
				t.Errorf("Dex's client secret (%s) and the daemon's (EDGEPASS_OIDC_CLIENTSECRET) differ", c.SecretEnv)
			}
			if !slices.Equal(c.RedirectURIs, []string{q.daemon.PublicURL + "/callback"}) {
				t.Errorf("Dex client redirectURIs %q, want [%s/callback]", c.RedirectURIs, q.daemon.PublicURL)
			}
		}
		if !found {
			t.Errorf("dex.yaml has no static client %q (oidc.clientID)", q.daemon.OIDC.ClientID)
		}
		if !slices.Contains(q.daemon.OIDC.Scopes, "groups") || !slices.Equal(q.daemon.OIDC.GroupsClaim, []string{"groups"}) {
			t.Errorf("Dex sends groups in the groups claim for the groups scope: scopes %q groupsClaim %q", q.daemon.OIDC.Scopes, q.daemon.OIDC.GroupsClaim)
		}
		if q.daemon.OIDC.ClientSecret == "" || strings.Contains(string(q.daemonRaw), "clientSecret:") {
			t.Error("the client secret must come from the environment, not edgepass.yml")
		}
	})

	t.Run("the daemon returns to the app and shares its cookie host", func(t *testing.T) {
		if q.daemon.Session.DefaultRedirect != appURL+"/" {
			t.Errorf("session.defaultRedirect %q, want the app %s/", q.daemon.Session.DefaultRedirect, appURL)
		}
		if !slices.Equal(q.daemon.Session.AllowedDomains, []string{"localhost"}) || hostOf(t, q.daemon.PublicURL) != "localhost" {
			t.Errorf("allowedDomains %q, publicURL %s: the app and the daemon share the host localhost (cookies ignore ports)", q.daemon.Session.AllowedDomains, q.daemon.PublicURL)
		}
		if q.daemon.Session.CookieDomain != "" {
			t.Errorf("session.cookieDomain %q: leave it empty (host-only cookie on localhost)", q.daemon.Session.CookieDomain)
		}
		cmd := q.service(t, svcDaemon).Command
		target := q.mountTarget(t, svcDaemon, filepath.Join(q.dir, "edgepass.yml"))
		if !slices.Equal(cmd, []string{"serve", "--configFile=" + target}) {
			t.Errorf("edgepass command %q, want [serve --configFile=%s]", cmd, target)
		}
	})

	t.Run("Dex's users: passwords as README.md says, groups the routes use", func(t *testing.T) {
		readme, err := os.ReadFile(filepath.Join(q.dir, "README.md"))
		if err != nil {
			t.Fatal(err)
		}
		groups := map[string][]string{}
		for _, u := range q.dex.StaticPasswords {
			pw, ok := quickstartUsers[u.Email]
			if !ok {
				t.Errorf("dex.yaml user %s is not one of the README's users", u.Email)
				continue
			}
			if err := bcrypt.CompareHashAndPassword([]byte(u.Hash), []byte(pw)); err != nil {
				t.Errorf("dex.yaml: %s's hash does not match the password %q: %v", u.Email, pw, err)
			}
			if cost, _ := bcrypt.Cost([]byte(u.Hash)); cost < 10 {
				t.Errorf("dex.yaml: %s's hash has cost %d; Dex refuses less than 10", u.Email, cost)
			}
			if !strings.Contains(string(readme), u.Email) || !strings.Contains(string(readme), pw) {
				t.Errorf("README.md does not give %s / %s", u.Email, pw)
			}
			if u.PreferredUsername == "" || u.UserID == "" || len(u.Groups) == 0 {
				t.Errorf("dex.yaml: %s needs preferredUsername, userID and groups", u.Email)
			}
			groups[u.Email] = u.Groups
		}
		admins := q.plugin(t, "sso-admins").AllowedGroups
		in := func(email string) bool {
			return slices.ContainsFunc(admins, func(g string) bool { return slices.Contains(groups[email], g) })
		}
		if !in("alice@example.com") || in("bob@example.com") {
			t.Errorf("sso-admins allows %q: README says alice is admitted and bob is not (groups %v)", admins, groups)
		}
	})
}
