package harness

import (
	"fmt"
	"io"
	"net"
	"sync"
)

// TCPProxy forwards 127.0.0.1:Port to a target. Cut severs every connection
// and refuses new ones until Restore: from the clients' side the server is
// gone, while the server keeps running for everyone else (the edges lose NATS
// while the daemon still publishes).
type TCPProxy struct {
	Port   int
	Target string

	ln    net.Listener
	mu    sync.Mutex
	cut   bool
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

// StartTCPProxy listens on 127.0.0.1:port and forwards to target.
func StartTCPProxy(port int, target string) (*TCPProxy, error) {
	ln, err := net.Listen("tcp", hostPort(port))
	if err != nil {
		return nil, fmt.Errorf("harness: nats proxy: listen on %d: %w", port, err)
	}
	p := &TCPProxy{Port: port, Target: target, ln: ln, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.serve()
	return p, nil
}

func (p *TCPProxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.cut {
			p.mu.Unlock()
			c.Close()
			continue
		}
		p.mu.Unlock()
		go p.pipe(c)
	}
}

func (p *TCPProxy) pipe(c net.Conn) {
	s, err := net.Dial("tcp", p.Target)
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	if p.cut {
		p.mu.Unlock()
		c.Close()
		s.Close()
		return
	}
	p.conns[c] = struct{}{}
	p.conns[s] = struct{}{}
	p.mu.Unlock()
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(s, c); done <- struct{}{} }()
	go func() { _, _ = io.Copy(c, s); done <- struct{}{} }()
	<-done
	c.Close()
	s.Close()
	p.mu.Lock()
	delete(p.conns, c)
	delete(p.conns, s)
	p.mu.Unlock()
}

// Cut closes every proxied connection and refuses new ones.
func (p *TCPProxy) Cut() {
	p.mu.Lock()
	p.cut = true
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
}

// Restore accepts connections again.
func (p *TCPProxy) Restore() {
	p.mu.Lock()
	p.cut = false
	p.mu.Unlock()
}

// Close stops the proxy.
func (p *TCPProxy) Close() {
	p.ln.Close()
	p.Cut()
	p.wg.Wait()
}
