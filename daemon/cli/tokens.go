package cli

import (
	"context"
	"fmt"
	"strings"

	"github.com/edgepass/edgepass/daemon/admin"
	"github.com/edgepass/edgepass/daemon/servicetoken"
)

const noSuchToken = "list them with `edgepass tokens list`"

// tokensHelp is the help of the tokens commands (commandHelp).
var tokensHelp = map[string]string{
	"tokens create": `Usage: edgepass tokens create <name> --audiences=<a1,a2> [--groups=<g1,g2>]
         [--expiresIn=<duration>] [--reason=<text>] [--json]

Issue a service token: a bearer token for a script or service. It is
accepted only by middlewares with serviceTokens enabled whose
serviceTokens.audiences name one of --audiences, only as
Authorization: Bearer. Its user is service:<name>; --groups are matched by
allowedGroups like a user's. --expiresIn (e.g. 12h; default and maximum:
the longest token lifetime edges accept, session.lifetime). The token is
printed this once; the daemon keeps only its record. The audit trail
records service_token_created with its name, audiences, groups and expiry
(never the token).
` + adminFlags,
	"tokens list": `Usage: edgepass tokens list [--json]

List the live service tokens (never the tokens themselves).
` + adminFlags,
	"tokens revoke": `Usage: edgepass tokens revoke <id> [--reason=<text>] [--json]

End a service token: every edge refuses it within a second (recorded as
service_token_revoked).
` + adminFlags,
}

func (r *runner) tokensCreate(ctx context.Context, c *client, o *options, name string) error {
	if len(o.audiences) == 0 {
		return &usageError{"tokens create needs --audiences=<a1,a2>: the serviceTokens.audiences of the routes that may accept it"}
	}
	if _, err := servicetoken.ParseExpiresIn(o.expiresIn); err != nil {
		return &usageError{err.Error()}
	}
	req := servicetoken.CreateRequest{Name: name, Groups: splitFlag(o.groups), Audiences: splitFlag(o.audiences), ExpiresIn: o.expiresIn}
	var res servicetoken.Created
	if ok, err := r.fetch(ctx, c, o, "POST", []string{"api", "v1", "service-tokens"}, nil, req, "", &res); !ok {
		return err
	}
	fmt.Fprintf(r.stderr, "Service token %s (id %s) for audiences %s, groups %s, expires %s. It is shown this once:\n",
		cell(res.Name), cell(res.ID), cell(strings.Join(res.Audiences, ",")), cell(strings.Join(res.Groups, ",")), stamp(res.ExpiresAt))
	fmt.Fprintln(r.stdout, res.Token)
	return nil
}

func (r *runner) tokensList(ctx context.Context, c *client, o *options) error {
	var l admin.ServiceTokenList
	if ok, err := r.fetch(ctx, c, o, "GET", []string{"api", "v1", "service-tokens"}, nil, nil, "", &l); !ok {
		return err
	}
	rows := make([][]string, 0, len(l.Tokens))
	for _, s := range l.Tokens {
		rows = append(rows, []string{cell(s.ID), cell(s.Username), cell(strings.Join(s.Audiences, ",")),
			cell(strings.Join(s.Groups, ",")), stamp(s.IssuedAt), stamp(s.ExpiresAt)})
	}
	return r.table("No service tokens.", "ID\tNAME\tAUDIENCES\tGROUPS\tISSUED\tEXPIRES", rows)
}

func (r *runner) tokensRevoke(ctx context.Context, c *client, o *options, id string) error {
	var res admin.ServiceTokenRevoked
	if ok, err := r.fetch(ctx, c, o, "DELETE", []string{"api", "v1", "service-tokens", id}, nil, nil, noSuchToken, &res); !ok {
		return err
	}
	fmt.Fprintf(r.stdout, "Revoked service token %s (%s) at every edge.\n", cell(res.ID), cell(res.Name))
	return nil
}

// splitFlag splits repeated, comma-separated flag values.
func splitFlag(vals []string) []string {
	out := []string{}
	for _, v := range vals {
		for _, p := range strings.Split(v, ",") {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
	}
	return out
}
