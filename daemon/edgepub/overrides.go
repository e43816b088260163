package edgepub

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/edgepass/edgepass/plugin/edgestate"
)

// Override is an administrator's group override in force. The edge bucket
// names the user by subject key (token.SubjectKey) only.
type Override struct {
	SubjectKey string
	Groups     []string
	At         time.Time // when it was set
	Exp        time.Time // when the fact expires (zero: with the bucket)
}

// maxOverrides bounds what AdminOverrides reads.
const maxOverrides = 10000

// AdminOverrides lists the administrators' group overrides in force
// (signed by the trust anchor, not cleared, not expired), as GroupsOverride
// reads them one by one. IdP group lists published for users whose groups
// do not fit a cookie are not overrides and are left out.
func (p *Publisher) AdminOverrides(ctx context.Context) ([]Override, error) {
	lister, err := p.kv.ListKeysFiltered(ctx, edgestate.PrefixGroups+">")
	if err != nil {
		return nil, fmt.Errorf("edgepub: list group overrides: %w", err)
	}
	var keys []string
	for k := range lister.Keys() {
		if len(keys) == maxOverrides {
			_ = lister.Stop()
			break
		}
		keys = append(keys, k)
	}
	now := p.o.Now().Unix()
	var out []Override
	for _, key := range keys {
		e, err := p.kv.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("edgepub: read group override: %w", err)
		}
		var f edgestate.GroupsFact
		if !p.readSigned(key, e.Value(), &f) || f.Clear || !f.Admin || (f.Exp > 0 && now > f.Exp) {
			continue
		}
		o := Override{SubjectKey: strings.TrimPrefix(key, edgestate.PrefixGroups), Groups: f.Groups, At: time.Unix(f.At, 0).UTC()}
		if f.Exp > 0 {
			o.Exp = time.Unix(f.Exp, 0).UTC()
		}
		out = append(out, o)
	}
	return out, nil
}
