package natsedge

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"
)

// clientName is the connection name operators see in the server's connz.
const clientName = "edgepass-edge"

// conn is one established, authenticated connection to a NATS server.
type conn struct {
	nc     net.Conn
	p      *parser
	info   serverInfo
	server serverURL
}

// connectInfo is the CONNECT payload.
type connectInfo struct {
	Verbose      bool   `json:"verbose"`
	Pedantic     bool   `json:"pedantic"`
	TLSRequired  bool   `json:"tls_required"`
	Name         string `json:"name"`
	Lang         string `json:"lang"`
	Version      string `json:"version"`
	Protocol     int    `json:"protocol"`
	Headers      bool   `json:"headers"`
	NoResponders bool   `json:"no_responders"`
	Token        string `json:"auth_token,omitempty"`
	User         string `json:"user,omitempty"`
	Pass         string `json:"pass,omitempty"`
	NKey         string `json:"nkey,omitempty"`
	JWT          string `json:"jwt,omitempty"`
	Sig          string `json:"sig,omitempty"`
}

// errAuth marks a refusal by the server (bad credentials, permissions).
var errAuth = errors.New("server refused the connection:")

// dial connects to u, upgrades to TLS when wanted or required, and
// authenticates. setConn is told about the raw connection as soon as it
// exists so that Close can interrupt a handshake.
func (s *settings) dial(ctx context.Context, u serverURL, setConn func(net.Conn)) (*conn, error) {
	d := &net.Dialer{Timeout: dialTimeout, KeepAlive: 15 * time.Second}
	nc, err := d.DialContext(ctx, "tcp", u.host)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", u.redact, err)
	}
	setConn(nc)
	c, err := s.handshake(ctx, nc, u)
	if err != nil {
		nc.Close()
		return nil, err
	}
	return c, nil
}

func (s *settings) handshake(ctx context.Context, nc net.Conn, u serverURL) (*conn, error) {
	// Secret files and the client certificate are read at every attempt,
	// so rotated ones are picked up; errors name the setting, not the secret.
	cr, err := s.auth(u)
	if err != nil {
		return nil, err
	}
	cert, err := s.clientCert()
	if err != nil {
		return nil, err
	}
	nc.SetDeadline(time.Now().Add(handshakeTimeout))
	c := &conn{nc: nc, server: u, p: newParser(nc)}
	f, err := c.p.next()
	if err != nil {
		return nil, fmt.Errorf("read INFO from %s: %w", u.redact, err)
	}
	if f.kind != opInfo {
		return nil, fmt.Errorf("%w: %s did not start with INFO", errProtocol, u.redact)
	}
	c.info = *f.info
	useTLS := s.wantTLS || c.info.TLSRequired
	if s.wantTLS && !c.info.TLSRequired && !c.info.TLSAvailable {
		return nil, fmt.Errorf("%s does not offer TLS, but TLS is configured (tls:// URL, caFile or certFile); enable TLS on the server", u.redact)
	}
	if useTLS {
		if c.p.r.Buffered() > 0 {
			return nil, fmt.Errorf("%w: %s sent data before the TLS handshake", errProtocol, u.redact)
		}
		tc := s.tlsConfig.Clone()
		if cert != nil {
			tc.Certificates = []tls.Certificate{*cert}
		}
		tc.ServerName = s.cfg.TLSServerName
		if tc.ServerName == "" {
			tc.ServerName = u.name
		}
		tconn := tls.Client(nc, tc)
		if err := tconn.HandshakeContext(ctx); err != nil {
			return nil, fmt.Errorf("TLS handshake with %s: %w (check nats.caFile / nats.tlsServerName)", u.redact, err)
		}
		c.nc = tconn
		c.p = newParser(tconn)
	}
	// After TLS the parser is a fresh one that did not read the INFO.
	c.p.setMaxPayload(c.info.MaxPayload)
	if !c.info.Headers {
		return nil, fmt.Errorf("%s does not support message headers; edgepass needs NATS server 2.2 or newer", u.redact)
	}
	ci := connectInfo{
		TLSRequired:  useTLS,
		Name:         clientName,
		Lang:         "go",
		Version:      "edgepass",
		Protocol:     1,
		Headers:      true,
		NoResponders: true,
	}
	ci.Token, ci.User, ci.Pass = cr.token, cr.user, cr.pass
	switch {
	case cr.jwt != "":
		// Operator mode: the server knows the user by the JWT's subject.
		ci.JWT = cr.jwt
		ci.Sig = cr.nkey.sign(c.info.Nonce)
	case cr.nkey != nil:
		ci.NKey = cr.nkey.public
		ci.Sig = cr.nkey.sign(c.info.Nonce)
	}
	payload, err := json.Marshal(ci)
	if err != nil {
		return nil, fmt.Errorf("encode CONNECT: %w", err)
	}
	buf := make([]byte, 0, len(payload)+24)
	buf = append(buf, "CONNECT "...)
	buf = append(buf, payload...)
	buf = append(buf, "\r\nPING\r\n"...)
	if _, err := c.nc.Write(buf); err != nil {
		return nil, fmt.Errorf("send CONNECT to %s: %w", u.redact, err)
	}
	// The server answers PING with PONG once CONNECT is accepted, or with
	// -ERR when it is not.
	for i := 0; i < 16; i++ {
		g, rerr := c.p.next()
		if rerr != nil {
			return nil, fmt.Errorf("connect to %s: %w", u.redact, rerr)
		}
		switch g.kind {
		case opPong:
			c.nc.SetDeadline(time.Time{})
			return c, nil
		case opErr:
			return nil, fmt.Errorf("%w %s said %q (check the nats credentials and the server's authorization)", errAuth, u.redact, g.err)
		case opPing:
			if err := c.write([]byte("PONG\r\n")); err != nil {
				return nil, err
			}
		case opInfo, opOK:
			// The parser applied the INFO's max_payload.
		default:
			return nil, fmt.Errorf("%w: unexpected message from %s during connect", errProtocol, u.redact)
		}
	}
	return nil, fmt.Errorf("%w: %s never answered PING", errProtocol, u.redact)
}

// write sends b, giving up after writeTimeout so a stuck peer cannot block.
func (c *conn) write(b []byte) error {
	c.nc.SetWriteDeadline(time.Now().Add(writeTimeout))
	_, err := c.nc.Write(b)
	return err
}

// appendPub appends "PUB subject [reply] len\r\npayload\r\n", or with a header
// block "HPUB subject [reply] hdrlen totallen\r\nheaders payload\r\n".
func appendPub(buf []byte, subject, reply string, hdr, payload []byte) []byte {
	if hdr != nil {
		buf = append(buf, 'H')
	}
	buf = append(buf, "PUB "...)
	buf = append(buf, subject...)
	buf = append(buf, ' ')
	if reply != "" {
		buf = append(buf, reply...)
		buf = append(buf, ' ')
	}
	if hdr != nil {
		buf = strconv.AppendInt(buf, int64(len(hdr)), 10)
		buf = append(buf, ' ')
	}
	buf = strconv.AppendInt(buf, int64(len(hdr)+len(payload)), 10)
	buf = append(buf, "\r\n"...)
	buf = append(buf, hdr...)
	buf = append(buf, payload...)
	buf = append(buf, "\r\n"...)
	return buf
}

func appendSub(buf []byte, subject string, sid uint64) []byte {
	buf = append(buf, "SUB "...)
	buf = append(buf, subject...)
	buf = append(buf, ' ')
	buf = strconv.AppendUint(buf, sid, 10)
	buf = append(buf, "\r\n"...)
	return buf
}

func appendUnsub(buf []byte, sid uint64) []byte {
	buf = append(buf, "UNSUB "...)
	buf = strconv.AppendUint(buf, sid, 10)
	buf = append(buf, "\r\n"...)
	return buf
}
