package natsedge

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Protocol limits. A server that exceeds them is treated as broken: the
// connection is dropped and re-established.
const (
	// maxLineLen caps one protocol line (INFO can carry many connect URLs).
	maxLineLen = 64 * 1024
	// absMaxPayload caps one message whatever the server's INFO claims.
	absMaxPayload = 64 << 20
	// payloadSlack tolerates headers the server adds on top of max_payload.
	payloadSlack = 64 * 1024
	// defaultMaxPayload is the server default, used until INFO says otherwise.
	defaultMaxPayload = 1 << 20
	// maxKeepPayload is the largest message the client keeps in memory;
	// larger (but legal) messages are read past and reported as oversized.
	maxKeepPayload = 1<<20 + 8*1024
	// maxSubjectLen caps subjects and reply subjects.
	maxSubjectLen = 4096
)

// errProtocol marks a malformed or oversized frame from the server.
var errProtocol = errors.New("NATS protocol error")

func protoErrorf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errProtocol, fmt.Sprintf(format, args...))
}

// Operation kinds. Plain untyped ints: yaegi v0.16.1 compares a struct
// field of a named integer type with a typed constant as unequal.
const (
	opInfo = iota + 1
	opMsg
	opPing
	opPong
	opOK
	opErr
)

// serverInfo is the part of the server's INFO the client uses.
type serverInfo struct {
	ServerID     string   `json:"server_id"`
	Version      string   `json:"version"`
	Proto        int      `json:"proto"`
	MaxPayload   int64    `json:"max_payload"`
	Headers      bool     `json:"headers"`
	AuthRequired bool     `json:"auth_required"`
	TLSRequired  bool     `json:"tls_required"`
	TLSAvailable bool     `json:"tls_available"`
	Nonce        string   `json:"nonce"`
	LameDuck     bool     `json:"ldm"`
	ConnectURLs  []string `json:"connect_urls"`
}

// header is one header line of an HMSG.
type header struct {
	key, value string
}

// message is a MSG or HMSG frame.
type message struct {
	subject string
	sid     uint64
	reply   string
	// status and description come from the header status line
	// ("NATS/1.0 100 Idle Heartbeat"); status is 0 for ordinary messages.
	status      int
	description string
	headers     []header
	// badHeader is set when the header block is not valid; the message is
	// still delivered so the caller can skip it without dropping the link.
	badHeader bool
	data      []byte
	// oversized is set when the payload was legal for the server but larger
	// than the client keeps; data is nil then.
	oversized bool
	size      int
}

// header returns the first value of key (case-insensitive), or "".
func (m *message) header(key string) string {
	for i := 0; i < len(m.headers); i++ {
		if strings.EqualFold(m.headers[i].key, key) {
			return m.headers[i].value
		}
	}
	return ""
}

// frame is one parsed server operation.
type frame struct {
	kind int
	info *serverInfo
	err  string
	msg  *message
}

// parser reads server operations from a buffered stream. It never reads a
// line longer than maxLineLen or a payload larger than maxPayload.
type parser struct {
	r *bufio.Reader
	// maxPayload is the largest payload accepted (from INFO plus slack).
	maxPayload int
	// keep is the largest payload kept in memory.
	keep int
}

func newParser(r io.Reader) *parser {
	br, ok := r.(*bufio.Reader)
	if !ok || br.Size() < maxLineLen {
		br = bufio.NewReaderSize(r, maxLineLen)
	}
	return &parser{r: br, maxPayload: defaultMaxPayload + payloadSlack, keep: maxKeepPayload}
}

// setMaxPayload applies the max_payload a server announced.
func (p *parser) setMaxPayload(n int64) {
	if n <= 0 {
		n = defaultMaxPayload
	}
	if n > absMaxPayload {
		n = absMaxPayload
	}
	p.maxPayload = int(n) + payloadSlack
}

// next reads the next operation. Any error leaves the stream unusable.
//
// It runs once per message: the line is read inline and MSG, the common
// case, goes straight to readMsg (under yaegi every call costs a frame).
func (p *parser) next() (frame, error) {
	for {
		line, err := p.r.ReadSlice('\n')
		if err != nil {
			if errors.Is(err, bufio.ErrBufferFull) {
				return frame{}, protoErrorf("line longer than %d bytes", maxLineLen)
			}
			if len(line) > 0 && errors.Is(err, io.EOF) {
				return frame{}, io.ErrUnexpectedEOF
			}
			return frame{}, err
		}
		line = line[:len(line)-1]
		if len(line) > 0 && line[len(line)-1] == '\r' {
			line = line[:len(line)-1]
		}
		if len(line) == 0 {
			// Tolerate empty lines between operations.
			continue
		}
		if len(line) > 4 && line[0] == 'M' && line[1] == 'S' && line[2] == 'G' && line[3] == ' ' {
			m, err := readMsg(p, line[4:], false)
			if err != nil {
				return frame{}, err
			}
			return frame{kind: opMsg, msg: m}, nil
		}
		verb, rest := splitVerb(line)
		if verb != "MSG" && verb != "HMSG" {
			verb = strings.ToUpper(verb)
		}
		switch verb {
		case "MSG", "HMSG":
			m, err := readMsg(p, rest, verb == "HMSG")
			if err != nil {
				return frame{}, err
			}
			return frame{kind: opMsg, msg: m}, nil
		case "PING":
			return frame{kind: opPing}, nil
		case "PONG":
			return frame{kind: opPong}, nil
		case "+OK":
			return frame{kind: opOK}, nil
		case "-ERR":
			return frame{kind: opErr, err: cleanErr(rest)}, nil
		case "INFO":
			info := &serverInfo{}
			if err := json.Unmarshal(rest, info); err != nil {
				return frame{}, protoErrorf("bad INFO: %v", err)
			}
			// Every INFO (the first one and later updates) sets the limit.
			p.setMaxPayload(info.MaxPayload)
			return frame{kind: opInfo, info: info}, nil
		default:
			return frame{}, protoErrorf("unknown operation %q", clip(verb, 16))
		}
	}
}

func splitVerb(line []byte) (string, []byte) {
	i := bytes.IndexAny(line, " \t")
	if i < 0 {
		return string(line), nil
	}
	return string(line[:i]), bytes.TrimLeft(line[i+1:], " \t")
}

// cleanErr turns "'Authorization Violation'" into "Authorization Violation".
func cleanErr(b []byte) string {
	s := strings.TrimSpace(string(b))
	s = strings.TrimPrefix(s, "'")
	s = strings.TrimSuffix(s, "'")
	return clip(s, 256)
}

func clip(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// readMsg parses "MSG <subject> <sid> [reply] <size>" or
// "HMSG <subject> <sid> [reply] <hdr size> <total size>" and its payload.
// (A function, not a method: cheaper under yaegi.)
func readMsg(p *parser, args []byte, hasHeaders bool) (*message, error) {
	f := strings.Fields(string(args))
	m := &message{}
	// MSG subject sid [reply] total; HMSG subject sid [reply] hdrlen total.
	verb, sizes := "MSG", 1
	if hasHeaders {
		verb, sizes = "HMSG", 2
	}
	switch len(f) {
	case 2 + sizes:
		m.subject = f[0]
	case 3 + sizes:
		m.subject, m.reply = f[0], f[2]
	default:
		return nil, protoErrorf("%s with %d arguments", verb, len(f))
	}
	n, err := strconv.ParseUint(f[len(f)-1], 10, 31)
	if err != nil {
		return nil, protoErrorf("bad size %q", clip(f[len(f)-1], 16))
	}
	total := int(n)
	var hdrLen int
	if hasHeaders {
		if hdrLen, err = parseSize(f[len(f)-2]); err != nil {
			return nil, err
		}
		if hdrLen > total {
			return nil, protoErrorf("HMSG header size %d larger than total %d", hdrLen, total)
		}
	}
	if len(m.subject) > maxSubjectLen || len(m.reply) > maxSubjectLen {
		return nil, protoErrorf("subject longer than %d bytes", maxSubjectLen)
	}
	sid, err := strconv.ParseUint(f[1], 10, 64)
	if err != nil {
		return nil, protoErrorf("bad sid %q", clip(f[1], 32))
	}
	m.sid = sid
	if total > p.maxPayload {
		return nil, protoErrorf("payload of %d bytes exceeds the limit of %d", total, p.maxPayload)
	}
	m.size = total
	if total > p.keep {
		// Legal for the server but more than an edge fact can be: skip it
		// without holding it in memory.
		if _, err := io.CopyN(io.Discard, p.r, int64(total)); err != nil {
			return nil, err
		}
		if err := p.expectCRLF(); err != nil {
			return nil, err
		}
		m.oversized = true
		return m, nil
	}
	// The payload and its CRLF in one read.
	buf := make([]byte, total+2)
	if _, err := io.ReadFull(p.r, buf); err != nil {
		return nil, err
	}
	if buf[total] != '\r' || buf[total+1] != '\n' {
		return nil, protoErrorf("payload not followed by CRLF")
	}
	buf = buf[:total]
	if hasHeaders {
		if !parseHeaders(buf[:hdrLen], m) {
			m.badHeader = true
		}
		m.data = buf[hdrLen:]
	} else {
		m.data = buf
	}
	return m, nil
}

func (p *parser) expectCRLF() error {
	var crlf [2]byte
	if _, err := io.ReadFull(p.r, crlf[:]); err != nil {
		return err
	}
	if crlf[0] != '\r' || crlf[1] != '\n' {
		return protoErrorf("payload not followed by CRLF")
	}
	return nil
}

// parseSize parses a non-negative decimal size. strconv does the scan: under
// yaegi a native call is far cheaper than an interpreted loop.
func parseSize(s string) (int, error) {
	n, err := strconv.ParseUint(s, 10, 31)
	if err != nil {
		return 0, protoErrorf("bad size %q", clip(s, 16))
	}
	return int(n), nil
}

// parseHeaders parses a "NATS/1.0[ code[ description]]\r\n(key: value\r\n)*\r\n"
// block into m. It reports false for a block that does not follow that form.
func parseHeaders(b []byte, m *message) bool {
	const prefix = "NATS/1.0"
	if !bytes.HasPrefix(b, []byte(prefix)) || !bytes.HasSuffix(b, []byte("\r\n\r\n")) {
		return false
	}
	b = b[:len(b)-2]
	nl := bytes.Index(b, []byte("\r\n"))
	status := strings.TrimSpace(string(b[len(prefix):nl]))
	if status != "" {
		code, desc, _ := strings.Cut(status, " ")
		n, err := strconv.Atoi(code)
		if err != nil || n < 100 || n > 999 {
			return false
		}
		m.status = n
		m.description = strings.TrimSpace(desc)
	}
	rest := b[nl+2:]
	for len(rest) > 0 {
		i := bytes.Index(rest, []byte("\r\n"))
		if i < 0 {
			return false
		}
		line := rest[:i]
		rest = rest[i+2:]
		k, v, ok := bytes.Cut(line, []byte(":"))
		if !ok || len(bytes.TrimSpace(k)) == 0 {
			return false
		}
		m.headers = append(m.headers, header{key: string(bytes.TrimSpace(k)), value: string(bytes.TrimSpace(v))})
	}
	return true
}

// ackInfo is the metadata in a JetStream delivery's reply subject.
type ackInfo struct {
	stream, consumer string
	delivered        uint64
	streamSeq        uint64
	consumerSeq      uint64
	timestamp        int64
	pending          uint64
}

// parseAck parses "$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>"
// and the newer "$JS.ACK.<domain>.<account hash>.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>[.<token>]"
// (9 tokens, or 11 or more, as nats.go accepts).
// It runs once per delivery: strconv calls inline, no helper frames.
func parseAck(reply string, a *ackInfo) bool {
	if len(reply) < 8 || reply[:8] != "$JS.ACK." {
		return false
	}
	t := strings.Split(reply, ".")
	var rest []string
	switch {
	case len(t) == 9:
		rest = t[2:]
	case len(t) >= 11 && len(t) <= 16:
		rest = t[4:]
	default:
		return false
	}
	a.stream, a.consumer = rest[0], rest[1]
	if a.stream == "" || a.consumer == "" {
		return false
	}
	var err error
	if a.delivered, err = strconv.ParseUint(rest[2], 10, 64); err != nil {
		return false
	}
	if a.streamSeq, err = strconv.ParseUint(rest[3], 10, 64); err != nil {
		return false
	}
	if a.consumerSeq, err = strconv.ParseUint(rest[4], 10, 64); err != nil {
		return false
	}
	ts, err := strconv.ParseUint(rest[5], 10, 64)
	if err != nil {
		return false
	}
	a.timestamp = int64(ts)
	if a.pending, err = strconv.ParseUint(rest[6], 10, 64); err != nil {
		return false
	}
	return true
}

func parseUint(s string) (uint64, bool) {
	n, err := strconv.ParseUint(s, 10, 64)
	return n, err == nil
}
