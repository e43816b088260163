package events

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/edgepass/edgepass/daemon/kvbucket"
)

// Defaults of Options.
const (
	DefaultStream   = "edgepass_events"
	DefaultMaxAge   = 90 * 24 * time.Hour
	DefaultMaxBytes = 256 << 20
)

// SubjectPrefix is the first part of every event's subject:
// edgepass.events.<stream>.<source>.<kind>.
const SubjectPrefix = "edgepass.events"

// Options configures the event stream.
type Options struct {
	// Stream is the JetStream stream name (events.stream).
	Stream string
	// MaxAge and MaxBytes bound what the stream keeps (events.maxAge,
	// events.maxBytes); the oldest events go first.
	MaxAge   time.Duration
	MaxBytes int64
	// Replicas is the JetStream replica count (nats.replicas).
	Replicas int
	// Stdout, when set, also receives each event this replica records as
	// one JSON line (events.stdout), for log shippers.
	Stdout io.Writer
	Logger *slog.Logger
	// Now is the clock (tests); default time.Now.
	Now func() time.Time
}

// Log is the audit trail in its own JetStream stream.
type Log struct {
	js      jetstream.JetStream
	stream  jetstream.Stream
	subject string // edgepass.events.<stream>
	o       Options
	log     *slog.Logger
	replica string
	outMu   sync.Mutex
}

// Open creates the stream, or updates its limits, and returns the log.
func Open(ctx context.Context, js jetstream.JetStream, o Options) (*Log, error) {
	if o.Stream == "" {
		o.Stream = DefaultStream
	}
	if o.MaxAge <= 0 {
		o.MaxAge = DefaultMaxAge
	}
	if o.MaxBytes <= 0 {
		o.MaxBytes = DefaultMaxBytes
	}
	if o.Replicas < 1 {
		o.Replicas = 1
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	subject := SubjectPrefix + "." + o.Stream
	var st jetstream.Stream
	err := kvbucket.Retry(ctx, func() error {
		var err error
		st, err = js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
			Name:        o.Stream,
			Description: "edgepass audit trail: who changed sessions, users, groups and keys",
			Subjects:    []string{subject + ".>"},
			Storage:     jetstream.FileStorage,
			Replicas:    o.Replicas,
			MaxAge:      o.MaxAge,
			MaxBytes:    o.MaxBytes,
			MaxMsgSize:  16 << 10,
			Discard:     jetstream.DiscardOld,
			Retention:   jetstream.LimitsPolicy,
		})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("events: create stream %s: %w", o.Stream, err)
	}
	host, _ := os.Hostname()
	return &Log{js: js, stream: st, subject: subject, o: o, log: o.Logger, replica: host}, nil
}

// Record completes e (time, actor from ctx), stores it and writes it to
// Stdout; a failure to store is logged with the whole event, never
// returned: the change it describes already happened.
func (l *Log) Record(ctx context.Context, e Event) {
	e = Complete(ctx, e, l.o.Now())
	if e.Replica == "" {
		e.Replica = l.replica
	}
	seq, err := l.Append(context.WithoutCancel(ctx), e)
	if err != nil {
		l.log.Error("events: cannot store an audit event; it is only in this log line", "err", err, "event", e)
	} else {
		e.Seq = seq
	}
	if l.o.Stdout != nil {
		line, err := json.Marshal(e)
		if err == nil {
			l.outMu.Lock()
			_, _ = l.o.Stdout.Write(append(line, '\n'))
			l.outMu.Unlock()
		}
	}
}

// appendTimeout bounds one append, JetStream leader elections included.
const appendTimeout = 15 * time.Second

// Append stores e as it is and returns its sequence.
func (l *Log) Append(ctx context.Context, e Event) (uint64, error) {
	if !ValidKind(e.Kind) {
		return 0, fmt.Errorf("events: unknown kind %q", e.Kind)
	}
	source := e.Source
	if !ValidSource(source) {
		return 0, fmt.Errorf("events: unknown source %q", e.Source)
	}
	if !ValidFor(e.Kind, source) {
		return 0, fmt.Errorf("events: %s cannot come from source %q (only %v)", e.Kind, source, SourcesOf(e.Kind))
	}
	e.Seq = 0
	e.User, e.Email, e.Subject = Clean(e.User, maxField), Clean(e.Email, maxField), Clean(e.Subject, maxField)
	e.Actor, e.Detail = Clean(e.Actor, maxField), Clean(e.Detail, 4*maxField)
	data, err := json.Marshal(e)
	if err != nil {
		return 0, fmt.Errorf("events: encode: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, appendTimeout)
	defer cancel()
	var ack *jetstream.PubAck
	err = kvbucket.Retry(ctx, func() error {
		var err error
		ack, err = l.js.Publish(ctx, l.subject+"."+source+"."+e.Kind, data)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("events: store %s: %w", e.Kind, err)
	}
	return ack.Sequence, nil
}

// scanWindow is how many stream messages one read covers; maxScan bounds
// the messages one Query reads (a filter that matches little returns a
// partial page with a cursor to continue from).
const (
	scanWindow = 256
	maxScan    = 20000
)

// Query returns a page of events matching f (see Filter for the order).
// Kind and source filter on the server (subjects); user and actor here.
func (l *Log) Query(ctx context.Context, f Filter) (Page, error) {
	if f.Limit <= 0 {
		f.Limit = 50
	}
	f.Limit = min(f.Limit, MaxLimit)
	if f.Before > 0 && f.After > 0 {
		return Page{}, errors.New("events: give either a before or an after cursor, not both")
	}
	info, err := l.stream.Info(ctx)
	if err != nil {
		return Page{}, fmt.Errorf("events: stream info: %w", err)
	}
	first, last := info.State.FirstSeq, info.State.LastSeq
	page := Page{Events: []Event{}, Last: last}
	if last == 0 || info.State.Msgs == 0 {
		return page, nil
	}
	if f.After > 0 {
		return l.forward(ctx, f, max(first, f.After+1), last, page)
	}
	hi := last
	if f.Before > 0 {
		if f.Before <= first {
			return page, nil
		}
		hi = min(last, f.Before-1)
	}
	scanned := uint64(0)
	for hi >= first && scanned < maxScan {
		lo := first
		if hi-first+1 > scanWindow {
			lo = hi - scanWindow + 1
		}
		batch, err := l.read(ctx, f, lo, hi)
		if err != nil {
			return Page{}, err
		}
		for i := len(batch) - 1; i >= 0; i-- {
			page.Events = append(page.Events, batch[i])
			if len(page.Events) == f.Limit {
				page.Next = batch[i].Seq
				if page.Next <= first {
					page.Next = 0
				}
				return page, nil
			}
		}
		scanned += hi - lo + 1
		if lo == first {
			return page, nil
		}
		hi = lo - 1
	}
	page.Next = hi + 1 // scan bound reached: continue below hi+1
	return page, nil
}

// forward serves an After query: matching events from lo on, oldest first.
func (l *Log) forward(ctx context.Context, f Filter, lo, last uint64, page Page) (Page, error) {
	page.Next = lo - 1
	scanned := uint64(0)
	for lo <= last && scanned < maxScan {
		hi := min(last, lo+scanWindow-1)
		batch, err := l.read(ctx, f, lo, hi)
		if err != nil {
			return Page{}, err
		}
		for _, e := range batch {
			page.Events = append(page.Events, e)
			page.Next = e.Seq
			if len(page.Events) == f.Limit {
				return page, nil
			}
		}
		page.Next = hi
		scanned += hi - lo + 1
		lo = hi + 1
	}
	return page, nil
}

// read returns the events with stream sequences lo..hi that match f,
// oldest first, through a short-lived consumer filtered by kind and source.
func (l *Log) read(ctx context.Context, f Filter, lo, hi uint64) ([]Event, error) {
	src, kind := "*", "*"
	if f.Source != "" {
		src = f.Source
	}
	if f.Kind != "" {
		kind = f.Kind
	}
	cons, err := l.stream.CreateConsumer(ctx, jetstream.ConsumerConfig{
		DeliverPolicy:     jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:       lo,
		AckPolicy:         jetstream.AckNonePolicy,
		FilterSubject:     l.subject + "." + src + "." + kind,
		InactiveThreshold: 30 * time.Second,
		MemoryStorage:     true,
		Replicas:          1,
	})
	if err != nil {
		return nil, fmt.Errorf("events: read: %w", err)
	}
	name := cons.CachedInfo().Name
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		_ = l.stream.DeleteConsumer(dctx, name)
		cancel()
	}()
	var out []Event
	for {
		want := int(min(hi-lo+1, scanWindow))
		batch, err := cons.FetchNoWait(want)
		if err != nil {
			return nil, fmt.Errorf("events: read: %w", err)
		}
		n := 0
		past := false
		for m := range batch.Messages() {
			n++
			md, err := m.Metadata()
			if err != nil {
				continue
			}
			seq := md.Sequence.Stream
			if seq > hi {
				past = true
				continue
			}
			lo = seq + 1
			var e Event
			if json.Unmarshal(m.Data(), &e) != nil {
				l.log.Warn("events: skipping an unreadable event", "seq", seq)
				continue
			}
			e.Seq = seq
			if f.Match(e) {
				out = append(out, e)
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
			return nil, fmt.Errorf("events: read: %w", err)
		}
		if n == 0 || past || lo > hi {
			return out, nil
		}
	}
}
