package natsedge

import (
	"bufio"
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeServer is a scripted NATS server speaking just enough of the client
// protocol to drive the watcher through connect, auth and consumer flows.
type fakeServer struct {
	t     *testing.T
	ln    net.Listener
	conns chan *fakeConn

	mu sync.Mutex
	// info fields sent to every client.
	maxPayload int
	tlsCert    *tls.Certificate
	// authorize checks the CONNECT payload; nil accepts everything.
	authorize func(c map[string]any, nonce string) bool
	// answerPings makes the server answer client PINGs.
	answerPings bool
	// connectURLs are announced in INFO (cluster peers).
	connectURLs []string
	// clientCAs makes the TLS server require a client certificate signed by one of them.
	clientCAs *x509.CertPool
}

// clientOp is one operation the client sent.
type clientOp struct {
	verb    string
	args    []string
	payload []byte
}

type fakeConn struct {
	nc      net.Conn
	connect map[string]any
	ops     chan clientOp
	wmu     sync.Mutex
	done    chan struct{}
}

// newFakeServer starts a fake server; opts adjust it before it accepts.
func newFakeServer(t *testing.T, opts ...func(*fakeServer)) *fakeServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &fakeServer{t: t, ln: ln, conns: make(chan *fakeConn, 16), maxPayload: 1 << 20, answerPings: true}
	for _, o := range opts {
		o(s)
	}
	go s.accept()
	t.Cleanup(func() { ln.Close() })
	return s
}

func (s *fakeServer) url() string { return "nats://" + s.ln.Addr().String() }

func (s *fakeServer) accept() {
	for {
		nc, err := s.ln.Accept()
		if err != nil {
			return
		}
		go s.handle(nc)
	}
}

func (s *fakeServer) handle(nc net.Conn) {
	s.mu.Lock()
	authorize, maxPayload, cert, urls, clientCAs := s.authorize, s.maxPayload, s.tlsCert, s.connectURLs, s.clientCAs
	s.mu.Unlock()
	nonce := "nonce-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	info := map[string]any{
		"server_id": "FAKE", "version": "2.99.0", "proto": 1, "headers": true,
		"max_payload": maxPayload, "nonce": nonce, "auth_required": authorize != nil,
		"tls_required": cert != nil,
	}
	if len(urls) > 0 {
		info["connect_urls"] = urls
	}
	b, _ := json.Marshal(info)
	if _, err := fmt.Fprintf(nc, "INFO %s\r\n", b); err != nil {
		nc.Close()
		return
	}
	if cert != nil {
		tcfg := &tls.Config{Certificates: []tls.Certificate{*cert}}
		if clientCAs != nil {
			tcfg.ClientCAs = clientCAs
			tcfg.ClientAuth = tls.RequireAndVerifyClientCert
		}
		tc := tls.Server(nc, tcfg)
		if err := tc.Handshake(); err != nil {
			nc.Close()
			return
		}
		nc = tc
	}
	br := bufio.NewReader(nc)
	line, err := br.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "CONNECT ") {
		nc.Close()
		return
	}
	var connect map[string]any
	if err := json.Unmarshal([]byte(strings.TrimSpace(line[len("CONNECT "):])), &connect); err != nil {
		nc.Close()
		return
	}
	if line, err = br.ReadString('\n'); err != nil || strings.TrimSpace(line) != "PING" {
		nc.Close()
		return
	}
	if authorize != nil && !authorize(connect, nonce) {
		io.WriteString(nc, "-ERR 'Authorization Violation'\r\n")
		nc.Close()
		return
	}
	io.WriteString(nc, "PONG\r\n")
	fc := &fakeConn{nc: nc, connect: connect, ops: make(chan clientOp, 4096), done: make(chan struct{})}
	s.conns <- fc
	go s.read(fc, br)
}

func (s *fakeServer) read(fc *fakeConn, br *bufio.Reader) {
	defer close(fc.done)
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		op := clientOp{verb: f[0], args: f[1:]}
		switch op.verb {
		case "PUB", "HPUB":
			n, _ := strconv.Atoi(f[len(f)-1])
			buf := make([]byte, n+2)
			if _, err := io.ReadFull(br, buf); err != nil {
				return
			}
			op.payload = buf[:n]
		case "PING":
			s.mu.Lock()
			answer := s.answerPings
			s.mu.Unlock()
			if answer {
				fc.send("PONG\r\n")
			}
		}
		select {
		case fc.ops <- op:
		default:
		}
	}
}

// next waits for a client connection.
func (s *fakeServer) next(timeout time.Duration) *fakeConn {
	s.t.Helper()
	select {
	case c := <-s.conns:
		return c
	case <-time.After(timeout):
		s.t.Fatalf("no client connection within %s", timeout)
		return nil
	}
}

func (fc *fakeConn) send(s string) {
	fc.wmu.Lock()
	defer fc.wmu.Unlock()
	fc.nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(fc.nc, s)
}

func (fc *fakeConn) close() { fc.nc.Close() }

// expect waits for an operation matching verb and, when subjectPrefix is
// set, whose first argument starts with it.
func (fc *fakeConn) expect(t *testing.T, verb, subjectPrefix string, timeout time.Duration) clientOp {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case op := <-fc.ops:
			if op.verb == verb && (subjectPrefix == "" || (len(op.args) > 0 && strings.HasPrefix(op.args[0], subjectPrefix))) {
				return op
			}
		case <-deadline:
			t.Fatalf("no %s %s within %s", verb, subjectPrefix, timeout)
			return clientOp{}
		}
	}
}

// createReq is a parsed consumer create request.
type createReq struct {
	reply   string
	subject string
	name    string // the consumer name in the subject
	req     createRequest
	subSID  string // sid of the deliver subscription
}

// expectCreate waits for SUB <deliver> and the named consumer create request
// ($JS.API.CONSUMER.CREATE.KV_<bucket>.<name>, action "create").
func (fc *fakeConn) expectCreate(t *testing.T, bucket string, timeout time.Duration) createReq {
	t.Helper()
	subs := map[string]string{}
	prefix := "$JS.API.CONSUMER.CREATE.KV_" + bucket
	deadline := time.After(timeout)
	for {
		select {
		case op := <-fc.ops:
			if op.verb == "SUB" && len(op.args) == 2 {
				subs[op.args[0]] = op.args[1]
			}
			if op.verb == "PUB" && len(op.args) == 3 && strings.HasPrefix(op.args[0], prefix) {
				var cr createReq
				cr.subject, cr.reply = op.args[0], op.args[1]
				if !strings.HasPrefix(cr.subject, prefix+".") || strings.Count(cr.subject, ".") != 5 {
					t.Fatalf("consumer create on %s: want the 6-token named form %s.<name>", cr.subject, prefix)
				}
				cr.name = cr.subject[len(prefix)+1:]
				if err := json.Unmarshal(op.payload, &cr.req); err != nil {
					t.Fatalf("create request %q: %v", op.payload, err)
				}
				if cr.req.Config.Name != cr.name || cr.req.Action != "create" {
					t.Fatalf("create request on %s: config name %q action %q", cr.subject, cr.req.Config.Name, cr.req.Action)
				}
				cr.subSID = subs[cr.req.Config.DeliverSubject]
				if cr.subSID == "" {
					t.Fatalf("consumer created on %s before subscribing to it", cr.req.Config.DeliverSubject)
				}
				return cr
			}
		case <-deadline:
			t.Fatalf("no consumer create request within %s", timeout)
			return createReq{}
		}
	}
}

// replyCreated answers a create request with a consumer info.
func (fc *fakeConn) replyCreated(cr createReq, pending int) {
	fc.replyCreatedAt(cr, pending, 0)
}

// replyCreatedAt answers a create request with a consumer info whose
// delivered.stream_seq is streamSeq.
func (fc *fakeConn) replyCreatedAt(cr createReq, pending int, streamSeq uint64) {
	body := fmt.Sprintf(`{"type":"io.nats.jetstream.api.v1.consumer_create_response","stream_name":"%s","name":"%s","delivered":{"consumer_seq":0,"stream_seq":%d},"num_pending":%d}`, cr.req.Stream, cr.name, streamSeq, pending)
	fc.reply(cr.reply, body)
}

// replyError answers a request with a JetStream API error.
func (fc *fakeConn) replyError(reply string, code, errCode int, desc string) {
	fc.reply(reply, fmt.Sprintf(`{"type":"io.nats.jetstream.api.v1.consumer_create_response","error":{"code":%d,"err_code":%d,"description":%q}}`, code, errCode, desc))
}

// reply sends body to a reply subject (on the client's reply subscription, sid 1).
func (fc *fakeConn) reply(reply, body string) {
	fc.send(fmt.Sprintf("MSG %s 1 %d\r\n%s\r\n", reply, len(body), body))
}

// expectStreamInfo waits for a STREAM.INFO request and returns its reply subject.
func (fc *fakeConn) expectStreamInfo(t *testing.T, bucket string, timeout time.Duration) string {
	t.Helper()
	op := fc.expect(t, "PUB", "$JS.API.STREAM.INFO.KV_"+bucket, timeout)
	if op.args[0] != "$JS.API.STREAM.INFO.KV_"+bucket || len(op.args) != 3 {
		t.Fatalf("stream info request %v", op.args)
	}
	return op.args[1]
}

// replyStreamInfo answers a STREAM.INFO request with the stream's last sequence.
func (fc *fakeConn) replyStreamInfo(reply, bucket string, last uint64) {
	fc.reply(reply, fmt.Sprintf(`{"type":"io.nats.jetstream.api.v1.stream_info_response","config":{"name":"KV_%s","subjects":["$KV.%s.>"]},"state":{"messages":1,"first_seq":1,"last_seq":%d}}`, bucket, bucket, last))
}

// deliver sends one KV entry on the consumer's deliver subject.
func (fc *fakeConn) deliver(cr createReq, bucket, key, op, value string, sseq, cseq, pending int) {
	reply := fmt.Sprintf("$JS.ACK.KV_%s.%s.1.%d.%d.%d.%d", bucket, cr.name, sseq, cseq, time.Now().UnixNano(), pending)
	subject := "$KV." + bucket + "." + key
	if op == "" {
		fc.send(fmt.Sprintf("MSG %s %s %s %d\r\n%s\r\n", subject, cr.subSID, reply, len(value), value))
		return
	}
	hdr := "NATS/1.0\r\nKV-Operation: " + op + "\r\n\r\n"
	fc.send(fmt.Sprintf("HMSG %s %s %s %d %d\r\n%s%s\r\n", subject, cr.subSID, reply, len(hdr), len(hdr)+len(value), hdr, value))
}

// status sends a status message (heartbeat, flow control) on the deliver subject.
func (fc *fakeConn) status(cr createReq, reply, hdr string) {
	args := cr.req.Config.DeliverSubject + " " + cr.subSID
	if reply != "" {
		args += " " + reply
	}
	fc.send(fmt.Sprintf("HMSG %s %d %d\r\n%s\r\n", args, len(hdr), len(hdr), hdr))
}

// verifyNKey checks a CONNECT's nkey signature over nonce, as a server does.
func verifyNKey(c map[string]any, nonce, wantPublic string) bool {
	nk, _ := c["nkey"].(string)
	sig, _ := c["sig"].(string)
	if nk != wantPublic {
		return false
	}
	pub, err := decodeUserNKey(nk)
	if err != nil {
		return false
	}
	raw, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil {
		return false
	}
	return ed25519.Verify(pub, []byte(nonce), raw)
}

// directGet is a parsed direct get request of the bridge.
type directGet struct {
	reply string
	req   struct {
		Seq        uint64 `json:"seq"`
		NextBySubj string `json:"next_by_subj"`
		Batch      int    `json:"batch"`
		MaxBytes   int    `json:"max_bytes"`
	}
}

// expectDirectGet waits for a direct get request on the bucket's stream.
func (fc *fakeConn) expectDirectGet(t *testing.T, bucket string, timeout time.Duration) directGet {
	t.Helper()
	op := fc.expect(t, "PUB", "$JS.API.DIRECT.GET.KV_"+bucket, timeout)
	if op.args[0] != "$JS.API.DIRECT.GET.KV_"+bucket || len(op.args) != 3 {
		t.Fatalf("direct get request %v", op.args)
	}
	var dg directGet
	dg.reply = op.args[1]
	if err := json.Unmarshal(op.payload, &dg.req); err != nil {
		t.Fatalf("direct get request %q: %v", op.payload, err)
	}
	return dg
}

// directEntry answers a batched direct get with one stored entry, the way
// nats-server 2.15 does: the entry's own headers plus Nats-Stream,
// Nats-Subject, Nats-Sequence, Nats-Time-Stamp, Nats-Num-Pending and
// Nats-Last-Sequence.
func (fc *fakeConn) directEntry(reply, bucket, key, op, value string, seq, pending, lastSeq int) {
	hdr := "NATS/1.0\r\n"
	if op != "" {
		hdr += "KV-Operation: " + op + "\r\n"
	}
	hdr += fmt.Sprintf("Nats-Stream: KV_%s\r\nNats-Subject: $KV.%s.%s\r\nNats-Sequence: %d\r\nNats-Time-Stamp: %s\r\n", bucket, bucket, key, seq, time.Now().UTC().Format(time.RFC3339Nano))
	if pending >= 0 {
		hdr += fmt.Sprintf("Nats-Num-Pending: %d\r\nNats-Last-Sequence: %d\r\n", pending, lastSeq)
	}
	hdr += "\r\n"
	fc.send(fmt.Sprintf("HMSG %s 1 %d %d\r\n%s%s\r\n", reply, len(hdr), len(hdr)+len(value), hdr, value))
}

// directStatus answers a direct get with a status: "404 Message Not Found",
// or "204 EOB" with its Nats-Num-Pending.
func (fc *fakeConn) directStatus(reply, status string, headers ...string) {
	hdr := "NATS/1.0 " + status + "\r\n"
	for _, h := range headers {
		hdr += h + "\r\n"
	}
	hdr += "\r\n"
	fc.send(fmt.Sprintf("HMSG %s 1 %d %d\r\n%s\r\n", reply, len(hdr), len(hdr), hdr))
}

// info sends an asynchronous INFO announcing the cluster's connect URLs.
func (fc *fakeConn) info(connectURLs []string) {
	b, _ := json.Marshal(map[string]any{"server_id": "FAKE", "version": "2.99.0", "proto": 1, "headers": true, "max_payload": 1 << 20, "connect_urls": connectURLs})
	fc.send(fmt.Sprintf("INFO %s\r\n", b))
}
