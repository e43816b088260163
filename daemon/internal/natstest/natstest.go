// Package natstest runs an embedded JetStream server in a temporary
// directory for tests, and restarts it on the same storage.
package natstest

import (
	"context"
	"testing"
	"time"

	"github.com/edgepass/edgepass/daemon/natsserver"
	"github.com/edgepass/edgepass/plugin/natsedge"
)

// Server is an embedded nats-server with JetStream file storage in Dir.
type Server struct {
	t   testing.TB
	Dir string
	// Listen is "127.0.0.1:0" when a client port was asked for, else "".
	Listen string
	*natsserver.Conn
}

// Start starts a server in a fresh temporary directory, reachable in-process
// only; it is stopped when the test ends.
func Start(t testing.TB) *Server { return start(t, t.TempDir(), "") }

// StartListening also opens a client port on a random loopback port
// (ClientURL), for clients that dial TCP such as the edge plugin.
func StartListening(t testing.TB) *Server { return start(t, t.TempDir(), "127.0.0.1:0") }

func start(t testing.TB, dir, listen string) *Server {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := natsserver.Open(ctx, natsserver.Options{Embedded: true, DataDir: dir, Listen: listen,
		Edges: []string{EdgeUser}, EdgeBucket: natsedge.DefaultBucket})
	if err != nil {
		t.Fatalf("natstest: %v", err)
	}
	s := &Server{t: t, Dir: dir, Listen: listen, Conn: c}
	t.Cleanup(func() { s.Stop() })
	return s
}

// EdgeUser is the edge user every test server has (permissions of
// natsedge.EdgePermissions on the default edge bucket).
const EdgeUser = "edge"

// EdgePassword is EdgeUser's generated password.
func (s *Server) EdgePassword() string {
	for _, e := range s.Credentials.Edges {
		if e.Name == EdgeUser {
			return e.Password
		}
	}
	return ""
}

// Stop drains and shuts the server down (JetStream flushed); safe to repeat.
func (s *Server) Stop() {
	if s.Conn == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = s.Conn.Close(ctx)
	s.Conn = nil
}

// Restart stops the server and starts a new one on the same directory.
func (s *Server) Restart() *Server {
	s.t.Helper()
	s.Stop()
	return start(s.t, s.Dir, s.Listen)
}

// Context returns a context bounded for a test step.
func Context(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}
