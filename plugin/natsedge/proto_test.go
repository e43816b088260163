package natsedge

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

func parseAll(t testing.TB, input string) ([]frame, error) {
	t.Helper()
	p := newParser(strings.NewReader(input))
	var out []frame
	for {
		f, err := p.next()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			return out, err
		}
		out = append(out, f)
	}
}

func TestParserFrames(t *testing.T) {
	tests := []struct {
		name  string
		input string
		check func(t *testing.T, fs []frame)
	}{
		{
			name:  "INFO",
			input: `INFO {"server_id":"S1","max_payload":2048,"headers":true,"tls_required":true,"nonce":"abc","proto":1}` + "\r\n",
			check: func(t *testing.T, fs []frame) {
				i := fs[0].info
				if fs[0].kind != opInfo || i.ServerID != "S1" || i.MaxPayload != 2048 || !i.Headers || !i.TLSRequired || i.Nonce != "abc" {
					t.Fatalf("info = %+v", i)
				}
			},
		},
		{
			name:  "PING PONG +OK lowercase",
			input: "PING\r\npong\r\n+OK\r\n\r\nPING\n",
			check: func(t *testing.T, fs []frame) {
				want := []int{opPing, opPong, opOK, opPing}
				if len(fs) != len(want) {
					t.Fatalf("got %d frames", len(fs))
				}
				for i := range want {
					if fs[i].kind != want[i] {
						t.Fatalf("frame %d kind %d, want %d", i, fs[i].kind, want[i])
					}
				}
			},
		},
		{
			name:  "-ERR",
			input: "-ERR 'Authorization Violation'\r\n",
			check: func(t *testing.T, fs []frame) {
				if fs[0].kind != opErr || fs[0].err != "Authorization Violation" {
					t.Fatalf("frame = %+v", fs[0])
				}
			},
		},
		{
			name:  "MSG without reply",
			input: "MSG foo.bar 9 5\r\nhello\r\n",
			check: func(t *testing.T, fs []frame) {
				m := fs[0].msg
				if m.subject != "foo.bar" || m.sid != 9 || m.reply != "" || string(m.data) != "hello" {
					t.Fatalf("msg = %+v", m)
				}
			},
		},
		{
			name:  "MSG with reply and empty payload",
			input: "MSG foo 1 _INBOX.x 0\r\n\r\n",
			check: func(t *testing.T, fs []frame) {
				m := fs[0].msg
				if m.reply != "_INBOX.x" || len(m.data) != 0 {
					t.Fatalf("msg = %+v", m)
				}
			},
		},
		{
			name:  "MSG payload containing CRLF",
			input: "MSG foo 1 4\r\na\r\nb\r\n",
			check: func(t *testing.T, fs []frame) {
				if string(fs[0].msg.data) != "a\r\nb" {
					t.Fatalf("data = %q", fs[0].msg.data)
				}
			},
		},
		{
			name:  "HMSG with KV-Operation",
			input: hmsg("$KV.b.k", 2, "$JS.ACK.KV_b.C.1.7.3.1700000000000000000.0", "NATS/1.0\r\nKV-Operation: DEL\r\n\r\n", ""),
			check: func(t *testing.T, fs []frame) {
				m := fs[0].msg
				if m.status != 0 || m.header("kv-operation") != "DEL" || len(m.data) != 0 || m.badHeader {
					t.Fatalf("msg = %+v", m)
				}
			},
		},
		{
			name:  "HMSG idle heartbeat",
			input: hmsg("_INBOX.d", 2, "", "NATS/1.0 100 Idle Heartbeat\r\nNats-Last-Consumer: 4\r\nNats-Last-Stream: 9\r\n\r\n", ""),
			check: func(t *testing.T, fs []frame) {
				m := fs[0].msg
				if m.status != 100 || m.description != "Idle Heartbeat" || m.header("Nats-Last-Consumer") != "4" || m.header("Nats-Last-Stream") != "9" {
					t.Fatalf("msg = %+v", m)
				}
			},
		},
		{
			name:  "HMSG flow control",
			input: hmsg("_INBOX.d", 2, "$JS.FC.KV_b.x.y", "NATS/1.0 100 FlowControl Request\r\n\r\n", ""),
			check: func(t *testing.T, fs []frame) {
				m := fs[0].msg
				if m.status != 100 || m.description != "FlowControl Request" || m.reply != "$JS.FC.KV_b.x.y" {
					t.Fatalf("msg = %+v", m)
				}
			},
		},
		{
			name:  "HMSG no responders",
			input: hmsg("_INBOX.r.1", 1, "", "NATS/1.0 503\r\n\r\n", ""),
			check: func(t *testing.T, fs []frame) {
				if fs[0].msg.status != 503 {
					t.Fatalf("msg = %+v", fs[0].msg)
				}
			},
		},
		{
			name:  "HMSG with malformed header block is delivered marked bad",
			input: hmsg("x", 1, "", "HTTP/1.1 200\r\n\r\n", "v"),
			check: func(t *testing.T, fs []frame) {
				if !fs[0].msg.badHeader || string(fs[0].msg.data) != "v" {
					t.Fatalf("msg = %+v", fs[0].msg)
				}
			},
		},
		{
			name:  "HMSG header line without colon is bad",
			input: hmsg("x", 1, "", "NATS/1.0\r\nnocolon\r\n\r\n", ""),
			check: func(t *testing.T, fs []frame) {
				if !fs[0].msg.badHeader {
					t.Fatalf("msg = %+v", fs[0].msg)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs, err := parseAll(t, tt.input)
			if err != nil {
				t.Fatal(err)
			}
			if len(fs) == 0 {
				t.Fatal("no frame")
			}
			tt.check(t, fs)
		})
	}
}

func hmsg(subject string, sid int, reply, hdr, payload string) string {
	args := subject + " " + itoa(sid)
	if reply != "" {
		args += " " + reply
	}
	return "HMSG " + args + " " + itoa(len(hdr)) + " " + itoa(len(hdr)+len(payload)) + "\r\n" + hdr + payload + "\r\n"
}

func itoa(n int) string {
	return string(appendInt(nil, n))
}

func appendInt(b []byte, n int) []byte {
	if n >= 10 {
		b = appendInt(b, n/10)
	}
	return append(b, byte('0'+n%10))
}

// TestParserRejectsMalformedFrames drops the connection on anything a NATS
// server would not send, instead of guessing.
func TestParserRejectsMalformedFrames(t *testing.T) {
	tests := []struct {
		name  string
		input string
	}{
		{"unknown verb", "HELLO world\r\n"},
		{"bad INFO json", "INFO {not json\r\n"},
		{"MSG too few args", "MSG foo 5\r\nhello\r\n"},
		{"MSG too many args", "MSG a b c d e\r\n"},
		{"MSG negative size", "MSG foo 1 -5\r\n"},
		{"MSG size not a number", "MSG foo 1 five\r\n"},
		{"MSG sid not a number", "MSG foo x 1\r\na\r\n"},
		{"MSG payload shorter than announced", "MSG foo 1 10\r\nabc\r\n"},
		{"MSG payload without CRLF", "MSG foo 1 3\r\nabcXY"},
		{"HMSG header larger than total", "HMSG foo 1 10 5\r\n0123456789\r\n"},
		{"HMSG one size only", "HMSG foo 1 5\r\nhello\r\n"},
		{"size overflow", "MSG foo 1 99999999999999999999\r\n"},
		{"line too long", "INFO " + strings.Repeat("x", maxLineLen+10) + "\r\n"},
		{"subject too long", "MSG " + strings.Repeat("s", maxSubjectLen+1) + " 1 0\r\n\r\n"},
		{"truncated line", "PIN"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseAll(t, tt.input)
			if err == nil {
				t.Fatal("want an error")
			}
		})
	}
}

// TestParserRejectsPayloadOverMaxPayload refuses a frame larger than the
// server's own max_payload, so a broken or hostile server cannot make the
// edge allocate without bound.
func TestParserRejectsPayloadOverMaxPayload(t *testing.T) {
	p := newParser(strings.NewReader("MSG foo 1 " + itoa(2048+payloadSlack+1) + "\r\n"))
	p.setMaxPayload(2048)
	_, err := p.next()
	if !errors.Is(err, errProtocol) {
		t.Fatalf("err = %v, want a protocol error", err)
	}
	p = newParser(strings.NewReader("MSG foo 1 " + itoa(absMaxPayload+payloadSlack+1) + "\r\n"))
	p.setMaxPayload(1 << 40)
	if _, err := p.next(); !errors.Is(err, errProtocol) {
		t.Fatalf("absolute cap: err = %v, want a protocol error", err)
	}
}

// TestParserAppliesInfoMaxPayload: every INFO, not just the first, sets the
// payload limit of the frames after it.
func TestParserAppliesInfoMaxPayload(t *testing.T) {
	input := `INFO {"max_payload":2048}` + "\r\n" + "MSG foo 1 " + itoa(2048+payloadSlack+1) + "\r\n"
	p := newParser(strings.NewReader(input))
	if f, err := p.next(); err != nil || f.kind != opInfo {
		t.Fatalf("INFO: kind %d err %v", f.kind, err)
	}
	if _, err := p.next(); !errors.Is(err, errProtocol) {
		t.Fatalf("err = %v, want a protocol error", err)
	}
}

// TestParserSkipsLegalButOversizedPayload reads past a payload that the server
// allows but that no edge fact can be, without holding it in memory.
func TestParserSkipsLegalButOversizedPayload(t *testing.T) {
	size := maxKeepPayload + 10
	input := "MSG $KV.b.k 2 $JS.ACK.KV_b.C.1.3.1.0.0 " + itoa(size) + "\r\n" + strings.Repeat("z", size) + "\r\nPING\r\n"
	p := newParser(strings.NewReader(input))
	p.setMaxPayload(8 << 20)
	f, err := p.next()
	if err != nil {
		t.Fatal(err)
	}
	if !f.msg.oversized || f.msg.data != nil || f.msg.reply == "" || f.msg.size != size {
		t.Fatalf("msg = oversized %v data %d reply %q", f.msg.oversized, len(f.msg.data), f.msg.reply)
	}
	if f, err := p.next(); err != nil || f.kind != opPing {
		t.Fatalf("stream not aligned after skip: %v %v", f.kind, err)
	}
}

func TestParseAck(t *testing.T) {
	tests := []struct {
		reply string
		ok    bool
		want  ackInfo
	}{
		{"$JS.ACK.KV_edge.C1.1.3.2.1700000000000000000.5", true, ackInfo{stream: "KV_edge", consumer: "C1", delivered: 1, streamSeq: 3, consumerSeq: 2, timestamp: 1700000000000000000, pending: 5}},
		{"$JS.ACK._.ACCHASH.KV_edge.C1.1.3.2.17.0.RANDOM", true, ackInfo{stream: "KV_edge", consumer: "C1", delivered: 1, streamSeq: 3, consumerSeq: 2, timestamp: 17, pending: 0}},
		{"$JS.ACK.dom.ACCHASH.KV_edge.C1.1.3.2.17.0", true, ackInfo{stream: "KV_edge", consumer: "C1", delivered: 1, streamSeq: 3, consumerSeq: 2, timestamp: 17, pending: 0}},
		{"$JS.ACK.KV_edge.C1.1.3.2.17", false, ackInfo{}},
		{"$JS.ACK.a.b.KV_edge.C1.1.3.2.17", false, ackInfo{}},
		{"$JS.NAK.KV_edge.C1.1.3.2.17.0", false, ackInfo{}},
		{"$JS.ACK.KV_edge.C1.1.x.2.17.0", false, ackInfo{}},
		{"$JS.ACK.KV_edge.C1.1.3.2.17.-1", false, ackInfo{}},
		{"$JS.ACK.KV_edge.C1.1.99999999999999999999.2.17.0", false, ackInfo{}},
		{"$JS.ACK..C1.1.3.2.17.0", false, ackInfo{}},
		{"", false, ackInfo{}},
	}
	for _, tt := range tests {
		var got ackInfo
		ok := parseAck(tt.reply, &got)
		if ok != tt.ok || (ok && got != tt.want) {
			t.Errorf("parseAck(%q) = %+v, %v; want %+v, %v", tt.reply, got, ok, tt.want, tt.ok)
		}
	}
}

func TestAppendPubAndHPub(t *testing.T) {
	if got := string(appendPub(nil, "a.b", "r", nil, []byte("xy"))); got != "PUB a.b r 2\r\nxy\r\n" {
		t.Fatalf("PUB = %q", got)
	}
	if got := string(appendPub(nil, "a", "", nil, nil)); got != "PUB a 0\r\n\r\n" {
		t.Fatalf("PUB = %q", got)
	}
	hdr := []byte("NATS/1.0\r\nK: v\r\n\r\n")
	got := appendPub(nil, "a", "", hdr, []byte("p"))
	want := "HPUB a 18 19\r\nNATS/1.0\r\nK: v\r\n\r\np\r\n"
	if string(got) != want {
		t.Fatalf("HPUB = %q, want %q", got, want)
	}
}

// FuzzParse feeds arbitrary server output to the parser: it must never panic,
// never return a payload over its limits and always make progress.
func FuzzParse(f *testing.F) {
	seeds := []string{
		"INFO {\"server_id\":\"x\",\"max_payload\":1024}\r\n",
		"MSG a 1 3\r\nabc\r\n",
		"MSG a 1 r 0\r\n\r\n",
		hmsg("_INBOX.d", 2, "", "NATS/1.0 100 Idle Heartbeat\r\nNats-Last-Consumer: 4\r\n\r\n", ""),
		hmsg("$KV.b.k", 2, "$JS.ACK.KV_b.C.1.7.3.1.0", "NATS/1.0\r\nKV-Operation: PURGE\r\n\r\n", ""),
		"HMSG a 1 12 12\r\nNATS/1.0 50\r\n\r\n",
		"-ERR 'Stale Connection'\r\nPING\r\nPONG\r\n+OK\r\n",
		"MSG a 1 99999\r\n",
		"HMSG a 1 5 3\r\n",
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p := newParser(bytes.NewReader(data))
		p.setMaxPayload(4096)
		limit := 4096 + payloadSlack
		for i := 0; i < 1000; i++ {
			fr, err := p.next()
			if err != nil {
				return
			}
			if fr.kind == opInfo && fr.info != nil {
				// An INFO in the input sets the limit, as a server's does.
				n := fr.info.MaxPayload
				if n <= 0 {
					n = defaultMaxPayload
				}
				if n > absMaxPayload {
					n = absMaxPayload
				}
				limit = int(n) + payloadSlack
			}
			if fr.kind == opMsg {
				m := fr.msg
				if len(m.data) > limit {
					t.Fatalf("payload of %d bytes over the limit", len(m.data))
				}
				if m.status != 0 && (m.status < 100 || m.status > 999) {
					t.Fatalf("status %d", m.status)
				}
			}
			if fr.kind == opInfo && fr.info == nil {
				t.Fatal("INFO frame without info")
			}
			if fr.kind == 0 {
				t.Fatal("frame without kind")
			}
		}
		t.Fatal("parser did not make progress")
	})
}
