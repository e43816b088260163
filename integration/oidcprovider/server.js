// A real OpenID Connect provider for edgepass's end-to-end tests and demo,
// built on the certified `oidc-provider` package. It serves one confidential
// client (`edgepass`) and two users with a password-checking login form and a
// consent form, so a Go HTTP client with a cookie jar can sign in like a
// browser does.
//
// Configuration (environment; the port may also be the first argument):
//   PORT                       listen port on 127.0.0.1 (required)
//   CLIENT_SECRET              the `edgepass` client's secret (required)
//   REDIRECT_URIS              comma-separated redirect URIs (the daemon's /callback)
//   POST_LOGOUT_REDIRECT_URIS  comma-separated post-logout redirect URIs
//   BACKCHANNEL_LOGOUT_URI     the daemon's /backchannel-logout ("" = none)
//   USERS_FILE                 optional JSON file replacing the built-in users
//   LOGOUT_TOKEN_OMIT          claims left out of back-channel logout tokens
//                              ("exp", "sub" or "exp,sub"), as some certified
//                              providers and older Authentik releases send them;
//                              POST /test/logout-token-omit (HTTP basic auth with
//                              the edgepass client's credentials, form field
//                              omit) changes it at run time
//
// Machine clients (client credentials, for edgepass's bearer access tokens):
// `robot` (groups robots) and `ops-robot` (groups robots, admins), secret
// CLIENT_SECRET. With resource MACHINE_RESOURCE (the default for them) they
// get RS256 JWT access tokens (typ at+jwt) with aud MACHINE_AUDIENCE, their
// groups and a 5-minute life. POST /test/access-token (HTTP basic auth with
// the edgepass client's credentials; form fields sub, aud, groups, exp_in
// seconds, may be negative) signs an access token with chosen claims, so the
// suite can present expired and wrong-audience tokens the IdP really signed.
//
// It prints "ready <issuer>" on stdout once listening.

import http from 'node:http';
import fs from 'node:fs';
import crypto from 'node:crypto';
import Provider, { errors } from 'oidc-provider';

function fail(msg) {
  console.error(`oidcprovider: ${msg}`);
  process.exit(2);
}

function list(value) {
  return (value || '').split(',').map((s) => s.trim()).filter(Boolean);
}

const port = Number(process.argv[2] || process.env.PORT);
if (!Number.isInteger(port) || port <= 0 || port > 65535) {
  fail('set PORT (or pass the port as the first argument) to a TCP port number');
}
const clientSecret = process.env.CLIENT_SECRET;
if (!clientSecret) fail('set CLIENT_SECRET to the edgepass client secret');
const redirectUris = list(process.env.REDIRECT_URIS);
if (redirectUris.length === 0) fail('set REDIRECT_URIS to the daemon\'s /callback URL');
const postLogoutRedirectUris = list(process.env.POST_LOGOUT_REDIRECT_URIS);
const backchannelLogoutUri = process.env.BACKCHANNEL_LOGOUT_URI || '';
const issuer = `http://127.0.0.1:${port}`;
let logoutTokenOmit = list(process.env.LOGOUT_TOKEN_OMIT);

// The provider's signing key, generated here (not by oidc-provider) so this
// server can also sign the logout tokens of the omit mode above.
const { privateKey: signingKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingJWK = { ...signingKey.export({ format: 'jwk' }), kid: crypto.randomBytes(8).toString('hex'), alg: 'RS256', use: 'sig' };

// Users: sub = the login name. Passwords are compared in constant time.
let users = {
  alice: {
    password: 'alice-password', name: 'Alice Example', email: 'alice@example.com', groups: ['staff', 'admins'],
  },
  bob: {
    password: 'bob-password', name: 'Bob Example', email: 'bob@example.com', groups: ['staff'],
  },
};
if (process.env.USERS_FILE) {
  try {
    users = JSON.parse(fs.readFileSync(process.env.USERS_FILE, 'utf8'));
  } catch (err) {
    fail(`cannot read USERS_FILE ${process.env.USERS_FILE}: ${err.message}`);
  }
}

function checkPassword(login, password) {
  const user = Object.hasOwn(users, login) ? users[login] : undefined;
  const want = Buffer.from(user ? user.password : 'no-such-user-placeholder');
  const got = Buffer.from(String(password || ''));
  const same = want.length === got.length && crypto.timingSafeEqual(want, got);
  return Boolean(user) && same;
}

async function findAccount(ctx, sub) {
  if (!Object.hasOwn(users, sub)) return undefined;
  const u = users[sub];
  return {
    accountId: sub,
    async claims() {
      return {
        sub,
        name: u.name,
        preferred_username: sub,
        email: u.email,
        email_verified: true,
        groups: [...u.groups],
      };
    },
  };
}

// Machine clients: their groups go into their access tokens.
const MACHINE_RESOURCE = 'https://machine-api.edgepass.test';
const MACHINE_AUDIENCE = 'machine-api';
const robotGroups = { robot: ['robots'], 'ops-robot': ['robots', 'admins'] };
const robots = Object.keys(robotGroups).map((id) => ({
  client_id: id,
  client_secret: clientSecret,
  grant_types: ['client_credentials'],
  response_types: [],
  redirect_uris: [],
  token_endpoint_auth_method: 'client_secret_basic',
}));

const client = {
  client_id: 'edgepass',
  client_secret: clientSecret,
  client_name: 'edgepass',
  grant_types: ['authorization_code', 'refresh_token'],
  response_types: ['code'],
  redirect_uris: redirectUris,
  post_logout_redirect_uris: postLogoutRedirectUris,
  token_endpoint_auth_method: 'client_secret_basic',
};
if (backchannelLogoutUri) {
  client.backchannel_logout_uri = backchannelLogoutUri;
  client.backchannel_logout_session_required = true;
}

const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({
  '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;',
}[c]));

function page(title, body) {
  return `<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>${esc(title)}</title>
<style>body{font-family:sans-serif;max-width:28em;margin:3em auto}label{display:block;margin:.5em 0}</style>
</head><body><h1>${esc(title)}</h1>
${body}
</body></html>`;
}

const provider = new Provider(issuer, {
  clients: [client, ...robots],
  extraTokenClaims: async (ctx, token) => (
    token.kind === 'ClientCredentials' && Object.hasOwn(robotGroups, token.clientId)
      ? { groups: [...robotGroups[token.clientId]] } : undefined),
  jwks: { keys: [signingJWK] },
  findAccount,
  claims: {
    openid: ['sub'],
    profile: ['name', 'preferred_username'],
    email: ['email', 'email_verified'],
    groups: ['groups'],
  },
  scopes: ['openid', 'offline_access', 'profile', 'email', 'groups'],
  // Put the requested claims in the ID token too, so a relying party that reads
  // only the ID token sees groups and email.
  conformIdTokenClaims: false,
  pkce: { required: () => true },
  // Refresh tokens for every code grant (the edgepass daemon refreshes to follow
  // group changes and disabled users); they end with the provider session.
  issueRefreshToken: async (ctx, c) => c.grantTypeAllowed('refresh_token'),
  cookies: { keys: [crypto.randomBytes(32).toString('base64url')] },
  features: {
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: async (ctx, c, oneOf) => {
        if (oneOf) return oneOf;
        return c && Object.hasOwn(robotGroups, c.clientId) ? MACHINE_RESOURCE : undefined;
      },
      useGrantedResource: async () => false,
      getResourceServerInfo: async (ctx, resource, c) => {
        if (resource !== MACHINE_RESOURCE || !Object.hasOwn(robotGroups, c.clientId)) {
          throw new errors.InvalidTarget();
        }
        return {
          scope: 'machine', audience: MACHINE_AUDIENCE, accessTokenTTL: 300, accessTokenFormat: 'jwt', jwt: { sign: { alg: 'RS256' } },
        };
      },
    },
    devInteractions: { enabled: false },
    backchannelLogout: { enabled: true },
    rpInitiatedLogout: {
      enabled: true,
      logoutSource: async (ctx, form) => {
        ctx.body = page('Sign out', `${form}
<p>Sign out of the identity provider?</p>
<button type="submit" form="op.logoutForm" name="logout" value="yes">Yes, sign me out</button>
<button type="submit" form="op.logoutForm">No, stay signed in</button>`);
      },
      postLogoutSuccessSource: async (ctx) => {
        ctx.body = page('Signed out', '<p>You are signed out.</p>');
      },
    },
  },
  interactions: {
    url: (ctx, interaction) => `/interaction/${interaction.uid}`,
  },
  ttl: {
    AccessToken: 3600,
    AuthorizationCode: 60,
    IdToken: 3600,
    RefreshToken: 14 * 24 * 3600,
    Interaction: 3600,
    Session: 14 * 24 * 3600,
    Grant: 14 * 24 * 3600,
  },
  renderError: async (ctx, out) => {
    ctx.type = 'html';
    ctx.body = page('Error', `<pre id="error">${esc(JSON.stringify(out, null, 2))}</pre>`);
  },
});

provider.on('server_error', (ctx, err) => console.error('oidcprovider: server_error', err));

// In omit mode, back-channel logout tokens are built here with the claims
// the mode leaves out; otherwise oidc-provider's own are sent.
const b64url = (buf) => Buffer.from(buf).toString('base64url');
const originalBackchannelLogout = provider.Client.prototype.backchannelLogout;
provider.Client.prototype.backchannelLogout = async function backchannelLogout(sub, sid) {
  if (logoutTokenOmit.length === 0) return originalBackchannelLogout.call(this, sub, sid);
  const now = Math.floor(Date.now() / 1000);
  const claims = {
    iss: issuer, aud: this.clientId, iat: now, exp: now + 120, jti: crypto.randomBytes(16).toString('hex'),
    sub, sid, events: { 'http://schemas.openid.net/event/backchannel-logout': {} },
  };
  for (const c of logoutTokenOmit) delete claims[c];
  const input = `${b64url(JSON.stringify({ alg: 'RS256', typ: 'logout+jwt', kid: signingJWK.kid }))}.${b64url(JSON.stringify(claims))}`;
  const token = `${input}.${b64url(crypto.sign('sha256', Buffer.from(input), signingKey))}`;
  const res = await fetch(this.backchannelLogoutUri, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ logout_token: token }).toString(),
  });
  if (res.status !== 200 && res.status !== 204) {
    throw new Error(`expected 200 OK from ${this.backchannelLogoutUri}, got: ${res.status}`);
  }
  console.log(`oidcprovider: logout token sent without ${logoutTokenOmit.join(',')}`);
};
provider.on('backchannel.error', (ctx, err, c, accountId, sid) => {
  console.error(`oidcprovider: back-channel logout to ${c.backchannelLogoutUri} for ${accountId} sid ${sid} failed: ${err.message}`);
});
provider.on('backchannel.success', (ctx, c, accountId, sid) => {
  console.log(`oidcprovider: back-channel logout delivered for ${accountId} sid ${sid}`);
});
provider.on('end_session.success', () => console.log('oidcprovider: end_session success'));

async function readForm(req) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > 64 * 1024) throw new Error('form too large');
    chunks.push(chunk);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

function send(res, status, html) {
  res.statusCode = status;
  res.setHeader('Content-Type', 'text/html; charset=utf-8');
  res.setHeader('Cache-Control', 'no-store');
  res.end(html);
}

function loginForm(uid, login, error) {
  return page('Sign in', `${error ? `<p id="error" role="alert">${esc(error)}</p>` : ''}
<form id="login" method="post" action="/interaction/${esc(uid)}/login">
<label>Username <input name="login" value="${esc(login || '')}" autocomplete="username" autofocus></label>
<label>Password <input name="password" type="password" autocomplete="current-password"></label>
<button type="submit">Sign in</button>
</form>`);
}

function consentForm(uid, details, clientId) {
  const scopes = (details.missingOIDCScope || []).join(' ');
  return page('Authorize', `<p>${esc(clientId)} asks for: <span id="scopes">${esc(scopes)}</span></p>
<form id="consent" method="post" action="/interaction/${esc(uid)}/confirm">
<button type="submit">Allow</button>
</form>
<form id="abort" method="post" action="/interaction/${esc(uid)}/abort">
<button type="submit">Deny</button>
</form>`);
}

// interaction handles the login and consent pages; everything else is the provider.
async function interaction(req, res, parts) {
  const [uid, action] = parts;
  const details = await provider.interactionDetails(req, res);
  if (details.uid !== uid) {
    send(res, 400, page('Error', '<p>interaction mismatch; start the sign-in again</p>'));
    return;
  }
  const { prompt, params } = details;
  if (req.method === 'GET' && !action) {
    if (prompt.name === 'login') send(res, 200, loginForm(uid));
    else if (prompt.name === 'consent') send(res, 200, consentForm(uid, prompt.details, params.client_id));
    else send(res, 501, page('Error', `<p>unsupported prompt ${esc(prompt.name)}</p>`));
    return;
  }
  if (req.method !== 'POST') {
    send(res, 405, page('Error', '<p>method not allowed</p>'));
    return;
  }
  if (action === 'login') {
    if (prompt.name !== 'login') {
      send(res, 400, page('Error', '<p>no sign-in pending</p>'));
      return;
    }
    const form = await readForm(req);
    const login = form.get('login') || '';
    if (!checkPassword(login, form.get('password'))) {
      console.log(`oidcprovider: failed sign-in for ${JSON.stringify(login)}`);
      send(res, 401, loginForm(uid, login, 'Invalid username or password.'));
      return;
    }
    console.log(`oidcprovider: ${login} signed in`);
    await provider.interactionFinished(req, res, { login: { accountId: login } }, { mergeWithLastSubmission: false });
    return;
  }
  if (action === 'confirm') {
    if (prompt.name !== 'consent') {
      send(res, 400, page('Error', '<p>no consent pending</p>'));
      return;
    }
    const { grantId, session } = details;
    const grant = grantId
      ? await provider.Grant.find(grantId)
      : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
    const d = prompt.details;
    if (d.missingOIDCScope) grant.addOIDCScope(d.missingOIDCScope.join(' '));
    if (d.missingOIDCClaims) grant.addOIDCClaims(d.missingOIDCClaims);
    if (d.missingResourceScopes) {
      for (const [indicator, scope] of Object.entries(d.missingResourceScopes)) {
        grant.addResourceScope(indicator, scope.join(' '));
      }
    }
    const saved = await grant.save();
    await provider.interactionFinished(req, res, { consent: { grantId: saved } }, { mergeWithLastSubmission: true });
    return;
  }
  if (action === 'abort') {
    await provider.interactionFinished(req, res, {
      error: 'access_denied', error_description: 'End-User aborted interaction',
    }, { mergeWithLastSubmission: false });
    return;
  }
  send(res, 404, page('Error', '<p>not found</p>'));
}

// testPostAllowed reports whether req is a POST authenticated as the
// edgepass client (HTTP Basic with its secret), as the test suite's /test
// endpoints require; otherwise it answers 403.
function testPostAllowed(req, res) {
  const want = `Basic ${Buffer.from(`edgepass:${clientSecret}`).toString('base64')}`;
  const got = String(req.headers.authorization || '');
  if (req.method !== 'POST' || got.length !== want.length || !crypto.timingSafeEqual(Buffer.from(got), Buffer.from(want))) {
    res.statusCode = 403;
    res.end('forbidden\n');
    return false;
  }
  return true;
}

// setLogoutTokenOmit serves POST /test/logout-token-omit for the test suite.
async function setLogoutTokenOmit(req, res) {
  if (!testPostAllowed(req, res)) return;
  const form = await readForm(req);
  const omit = list(form.get('omit'));
  if (omit.some((c) => c !== 'exp' && c !== 'sub')) {
    res.statusCode = 400;
    res.end('omit may name exp and sub only\n');
    return;
  }
  logoutTokenOmit = omit;
  console.log(`oidcprovider: logout tokens now omit [${omit.join(',')}]`);
  res.statusCode = 204;
  res.end();
}

// signAccessToken serves POST /test/access-token for the test suite: an
// access token signed with the provider's key, with the claims asked for.
async function signAccessToken(req, res) {
  if (!testPostAllowed(req, res)) return;
  const form = await readForm(req);
  const now = Math.floor(Date.now() / 1000);
  const expIn = Number(form.get('exp_in') || '300');
  const claims = {
    iss: issuer,
    sub: form.get('sub') || 'robot',
    client_id: form.get('sub') || 'robot',
    aud: form.get('aud') || MACHINE_AUDIENCE,
    iat: Math.min(now, now + expIn - 1),
    exp: now + expIn,
    jti: crypto.randomBytes(12).toString('hex'),
    scope: 'machine',
    groups: list(form.get('groups')),
  };
  const input = `${b64url(JSON.stringify({ alg: 'RS256', typ: 'at+jwt', kid: signingJWK.kid }))}.${b64url(JSON.stringify(claims))}`;
  res.statusCode = 200;
  res.setHeader('Content-Type', 'text/plain');
  res.end(`${input}.${b64url(crypto.sign('sha256', Buffer.from(input), signingKey))}`);
}

const callback = provider.callback();
const server = http.createServer(async (req, res) => {
  const url = new URL(req.url, issuer);
  if (url.pathname === '/test/logout-token-omit') {
    await setLogoutTokenOmit(req, res);
    return;
  }
  if (url.pathname === '/test/access-token') {
    await signAccessToken(req, res);
    return;
  }
  const parts = url.pathname.split('/').filter(Boolean);
  if (parts[0] === 'interaction' && parts.length >= 2 && parts.length <= 3) {
    try {
      await interaction(req, res, parts.slice(1));
    } catch (err) {
      console.error(`oidcprovider: interaction ${req.method} ${url.pathname}: ${err.message}`);
      if (!res.headersSent) send(res, 400, page('Error', `<p>${esc(err.message)}</p>`));
    }
    return;
  }
  callback(req, res);
});

server.listen(port, '127.0.0.1', () => {
  console.log(`ready ${issuer}`);
});
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => server.close(() => process.exit(0)));
}
