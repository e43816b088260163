package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/edgepass/edgepass/daemon/config"
	"github.com/edgepass/edgepass/daemon/internal/fakeidp"
)

func TestRunCommands(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		environ []string
		code    int
		stdout  string
		stderr  string
	}{
		{"help", []string{"edgepass", "--help"}, nil, 0, "edgepass serve --help lists every setting", ""},
		{"help names every admin command", []string{"edgepass", "help"}, nil, 0, "groups clear <user>", ""},
		{"help explains how to name a sub", []string{"edgepass", "--help"}, nil, 0, "sub:<sub> (or --sub)", ""},
		{"one command's help", []string{"edgepass", "users", "revoke", "--help"}, nil, 0, "Usage: edgepass users revoke <user>", ""},
		{"help for one command", []string{"edgepass", "help", "keys", "revoke"}, nil, 0, "Usage: edgepass keys revoke <kid>", ""},
		{"forwardauth-regex needs no daemon", []string{"edgepass", "forwardauth-regex", "--userHeader=X-User"}, nil, 0, "x[-_]user|", ""},
		{"no command", []string{"edgepass"}, nil, 2, "", "Commands"},
		{"version", []string{"edgepass", "version"}, nil, 0, "edgepass dev", ""},
		{"serve help lists settings", []string{"edgepass", "serve", "--help"}, nil, 0, "--oidc.issuer", ""},
		{"serve help shows env and readable defaults", []string{"edgepass", "serve", "-h"}, nil, 0, "--session.lifetime=12h\n      Session (and token) lifetime", ""},
		{"help serve", []string{"edgepass", "help", "serve"}, nil, 0, "(EDGEPASS_OIDC_ISSUER)", ""},
		{"admin command help", []string{"edgepass", "sessions", "--help"}, nil, 0, "sessions revoke <sid>", ""},
		{"unknown command", []string{"edgepass", "frobnicate"}, nil, 2, "", `unknown command "frobnicate"`},
		{"serve without settings", []string{"edgepass", "serve"}, nil, 1, "", "config: oidc.issuer: required; set --oidc.issuer or EDGEPASS_OIDC_ISSUER"},
		{"serve with unknown flag", []string{"edgepass", "serve", "--oidc.nope=1"}, nil, 1, "", "config: flags"},
		{"serve with stray argument", []string{"edgepass", "serve", "now"}, nil, 2, "", `unexpected argument "now"`},
		{"admin CLI is dispatched", []string{"edgepass", "edges", "--admin.url=http://127.0.0.1:1", "--admin.token=x"}, nil, 1, "", "cannot reach the admin API at http://127.0.0.1:1"},
		{"serve with bad env", []string{"edgepass", "serve"}, []string{"EDGEPASS_SESSION_LIFETIME=forever"}, 1, "", "config: environment"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := run(tc.args, tc.environ, &out, &errb)
			if code != tc.code || !strings.Contains(out.String(), tc.stdout) || !strings.Contains(errb.String(), tc.stderr) {
				t.Fatalf("exit %d (want %d)\nstdout: %s\nstderr: %s", code, tc.code, out.String(), errb.String())
			}
		})
	}
}

// freeAddrs finds n distinct free loopback ports (all held open while
// choosing, so they differ).
func freeAddrs(t *testing.T, n int) []string {
	t.Helper()
	var out []string
	for i := 0; i < n; i++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		out = append(out, ln.Addr().String())
	}
	return out
}

// daemon is the built binary running as a subprocess.
type daemon struct {
	cmd    *exec.Cmd
	stderr *bytes.Buffer
	exited chan error
}

func startDaemon(t *testing.T, bin string, env []string, admin string) *daemon {
	t.Helper()
	cmd := exec.Command(bin, "serve")
	cmd.Env = env
	d := &daemon{cmd: cmd, stderr: &bytes.Buffer{}, exited: make(chan error, 1)}
	cmd.Stderr = d.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.exited <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			<-d.exited
		}
		if t.Failed() {
			t.Logf("daemon log:\n%s", d.stderr.String())
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://" + admin + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return d
			}
		}
		select {
		case err := <-d.exited:
			t.Fatalf("daemon exited during start: %v\n%s", err, d.stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("daemon not ready after 30s\n%s", d.stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func httpDo(t *testing.T, method, u, auth, cookie string) (int, string) {
	t.Helper()
	req, _ := http.NewRequestWithContext(context.Background(), method, u, nil)
	if auth != "" {
		req.Header.Set("Authorization", "Bearer "+auth)
	}
	if cookie != "" {
		req.Header.Set("Cookie", cookie)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestKillNineLosesNothing spawns the built binary, signs in, kills it with
// SIGKILL and restarts it: the session, the rotated key and the retired key
// must all still be there. Then SIGTERM must stop it cleanly.
func TestKillNineLosesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "edgepass")
	build := exec.Command("go", "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}

	idp := fakeidp.Start("edgepass", fakeidp.User{Subject: "u-9", Username: "carol", Email: "carol@example.com", Groups: []string{"ops"}})
	defer idp.Close()
	addrs := freeAddrs(t, 3)
	public, admin, natsAddr := addrs[0], addrs[1], addrs[2]
	tokenFile := filepath.Join(dir, "admin-token")
	const adminToken = "kill-nine-admin-token-0123456789"
	if err := os.WriteFile(tokenFile, []byte(adminToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := []string{
		"PATH=" + os.Getenv("PATH"),
		"EDGEPASS_PUBLICURL=http://" + public,
		"EDGEPASS_LISTEN=" + public,
		"EDGEPASS_OIDC_ISSUER=" + idp.Issuer(),
		"EDGEPASS_OIDC_CLIENTID=edgepass",
		"EDGEPASS_SESSION_COOKIESECURE=false",
		"EDGEPASS_NATS_EMBEDDED_LISTEN=" + natsAddr,
		"EDGEPASS_DATADIR=" + dir,
		"EDGEPASS_ADMIN_LISTEN=" + admin,
		"EDGEPASS_ADMIN_TOKENFILE=" + tokenFile,
	}

	d := startDaemon(t, bin, env, admin)
	cookie, _, err := fakeidp.Login("http://"+public, "", "edgepass_session")
	if err != nil {
		t.Fatalf("login: %v\n%s", err, d.stderr.String())
	}
	sessCookie := "edgepass_session=" + cookie.Value
	if code, _ := httpDo(t, "GET", "http://"+public+"/verify", "", sessCookie); code != 200 {
		t.Fatalf("/verify before kill = %d", code)
	}
	code, body := httpDo(t, "POST", "http://"+admin+"/api/v1/keys/rotate", adminToken, "")
	var rotated struct {
		KeyID string `json:"kid"`
	}
	if code != 200 || json.Unmarshal([]byte(body), &rotated) != nil || rotated.KeyID == "" {
		t.Fatalf("rotate: %d %s", code, body)
	}
	_, listBody := httpDo(t, "GET", "http://"+admin+"/api/v1/sessions?user=u-9", adminToken, "")
	var list struct {
		Sessions []struct {
			ID string `json:"id"`
		} `json:"sessions"`
	}
	if json.Unmarshal([]byte(listBody), &list) != nil || len(list.Sessions) != 1 {
		t.Fatalf("sessions before kill: %s", listBody)
	}
	sid := list.Sessions[0].ID

	anchor, err := os.ReadFile(filepath.Join(dir, "trust-anchor.pub"))
	if err != nil || len(strings.TrimSpace(string(anchor))) != 43 {
		t.Fatalf("trust anchor file: %v %q", err, anchor)
	}
	if !strings.Contains(d.stderr.String(), "trustAnchors") {
		t.Errorf("the log does not tell how to configure the edges' trustAnchors:\n%s", d.stderr.String())
	}

	if err := d.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-d.exited

	d = startDaemon(t, bin, env, admin)
	if code, body := httpDo(t, "GET", "http://"+admin+"/api/v1/sessions/"+sid, adminToken, ""); code != 200 || !strings.Contains(body, "u-9") {
		t.Errorf("session after kill -9: %d %s", code, body)
	}
	if code, _ := httpDo(t, "GET", "http://"+public+"/verify", "", sessCookie); code != 200 {
		t.Errorf("/verify after kill -9 = %d (token signed by the retired key must still verify)", code)
	}
	_, jwks := httpDo(t, "GET", "http://"+public+"/.well-known/jwks.json", "", "")
	// (The assertion keys, kid assert-…, are served beside the session keys.)
	sessionKids := strings.Count(jwks, `"kid"`) - strings.Count(jwks, `"kid":"assert-`)
	if !strings.Contains(jwks, fmt.Sprintf("%q", rotated.KeyID)) || sessionKids != 2 || !strings.Contains(jwks, `"kid":"assert-`) {
		t.Errorf("JWKS after kill -9 = %s, want the rotated key and the retired one, and the assertion key", jwks)
	}

	// The CLI talks to the restarted daemon.
	cli := exec.Command(bin, "sessions", "list", "--user=u-9", "--json")
	cli.Env = append(env, "EDGEPASS_ADMIN_URL=http://"+admin, "EDGEPASS_ADMIN_TOKEN="+adminToken)
	if out, err := cli.CombinedOutput(); err != nil || !strings.Contains(string(out), sid) {
		t.Errorf("edgepass sessions list: %v\n%s", err, out)
	}
	// The trust anchor survives the kill: edges keep their configuration.
	cli = exec.Command(bin, "keys", "anchor")
	cli.Env = append(env, "EDGEPASS_ADMIN_URL=http://"+admin, "EDGEPASS_ADMIN_TOKEN="+adminToken)
	if out, err := cli.Output(); err != nil || string(out) != string(anchor) {
		t.Errorf("edgepass keys anchor after kill -9 = %q, %v; want %q", out, err, anchor)
	}

	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-d.exited:
		if err != nil {
			t.Errorf("exit after SIGTERM: %v\n%s", err, d.stderr.String())
		}
		if !strings.Contains(d.stderr.String(), "edgepass stopped") {
			t.Errorf("no clean stop in the log:\n%s", d.stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("daemon did not stop within 30s of SIGTERM")
	}
}

// --log.format=json writes one JSON object per line, for log shippers.
func TestLogFormat(t *testing.T) {
	var b strings.Builder
	newLogger(config.Log{Level: "info", Format: "json"}, &b).Info("starting edgepass", "version", "v1")
	var line map[string]any
	if err := json.Unmarshal([]byte(b.String()), &line); err != nil || line["msg"] != "starting edgepass" || line["version"] != "v1" {
		t.Fatalf("json log line %q: %v", b.String(), err)
	}
	b.Reset()
	newLogger(config.Log{Level: "warn", Format: "text"}, &b).Info("hidden")
	if b.Len() != 0 {
		t.Fatalf("info logged at level warn: %q", b.String())
	}
}
