// A real, certified OpenID Provider (oidc-provider) on loopback, for the tests: started by the
// Rust driver in testkit/src/oidc.rs as `node provider.mjs <config.json>`.
//
// config.json:
//   addr_file     where to write `http://127.0.0.1:<port>` once listening (the issuer)
//   clients_file  a JSON array of client metadata, read again on every client lookup
//   accounts      [{ login, sub, name, email, groups }]
//   jwks          optional private JWK set to sign with (a fresh RS256 key otherwise)
//
// The login and consent pages are our own plain HTML forms (oidc-provider's devInteractions
// pages load a web font from the internet, and sign in whatever login is typed as its own
// account id): a headless browser and raw HTTP can both fill them in.

import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';

import Provider from 'oidc-provider';
// oidc-provider's own in-memory storage, for every model but Client (the package exports no
// name for it; the version is pinned in package.json).
import MemoryAdapter from 'oidc-provider/lib/adapters/memory_adapter.js';

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const accounts = config.accounts ?? [];

// Clients come from a file the test writes once its services listen (their ports, so their
// redirect URIs, are known only then), and may write again: read it on every lookup. Clients
// from an adapter are not cached by id (oidc-provider keeps them by a hash of their metadata),
// unlike `configuration.clients`, which it would keep forever.
class ClientsFile {
  async find(id) {
    const clients = JSON.parse(readFileSync(config.clients_file, 'utf8'));
    return clients.find((client) => client.client_id === id);
  }

  async upsert() { throw new Error('clients are read from clients_file only'); }

  async destroy() {}
}

const adapter = (model) => (model === 'Client' ? new ClientsFile() : new MemoryAdapter(model));

// One signing key when the test brings none: RS256, as relying parties expect by default.
function signingKeys() {
  if (config.jwks) return config.jwks;
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = privateKey.export({ format: 'jwk' });
  return { keys: [{ ...jwk, kid: `rs256-${randomBytes(6).toString('hex')}`, alg: 'RS256', use: 'sig' }] };
}

// The account id is the `sub`: oidc-provider puts the account id, not the claims' `sub`, into
// back-channel logout tokens, so the two must be the same for a relying party to match them.
async function findAccount(_ctx, id) {
  const account = accounts.find((candidate) => candidate.sub === id);
  if (!account) return undefined;
  return {
    accountId: account.sub,
    async claims() {
      return {
        sub: account.sub,
        name: account.name,
        email: account.email,
        email_verified: true,
        groups: account.groups ?? [],
      };
    },
  };
}

const escape = (text) => String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

// A page with no external resources (no network but loopback in the tests).
function page(title, body) {
  return `<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>${escape(title)}</title></head>
<body><h1>${escape(title)}</h1>
${body}
</body></html>
`;
}

function send(res, status, html) {
  res.writeHead(status, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
  res.end(html);
}

const configuration = {
  adapter,
  findAccount,
  jwks: signingKeys(),
  cookies: { keys: [randomBytes(32).toString('hex')] },
  responseTypes: ['code'],
  pkce: { required: () => true },
  claims: {
    openid: ['sub'],
    profile: ['name'],
    email: ['email', 'email_verified'],
    groups: ['groups'],
  },
  // The scopes' claims go into the ID token itself, so a relying party needs no userinfo call.
  conformIdTokenClaims: false,
  interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
  // oidc-provider refuses to send requests (back-channel logout tokens) to special-use
  // addresses, loopback among them, through a dispatcher of its own in `options`; the
  // relying parties of the tests all listen on loopback.
  fetch: (url, { dispatcher, ...options }) => globalThis.fetch(url, options),
  features: {
    devInteractions: { enabled: false },
    backchannelLogout: { enabled: true },
    rpInitiatedLogout: {
      enabled: true,
      // `form` is oidc-provider's hidden form (action and xsrf); the buttons submit it.
      async logoutSource(ctx, form) {
        ctx.body = page('Sign out', `${form}
<button id="logout" type="submit" form="op.logoutForm" name="logout" value="yes">Yes, sign me out</button>
<button id="stay" type="submit" form="op.logoutForm">No, stay signed in</button>`);
      },
      async postLogoutSuccessSource(ctx) {
        ctx.body = page('Signed out', '<p id="signed-out">You are signed out.</p>');
      },
    },
  },
  async renderError(ctx, out) {
    ctx.type = 'html';
    ctx.body = page('Error', Object.entries(out)
      .map(([key, value]) => `<p><b>${escape(key)}</b>: <span id="${escape(key)}">${escape(value)}</span></p>`)
      .join('\n'));
  },
};

let provider;
let callback; // provider.callback(), once the provider exists

// The interaction pages: the login form (any password), then the consent form.
async function interaction(req, res, uid, action) {
  const details = await provider.interactionDetails(req, res);
  if (details.uid !== uid) throw new Error('interaction mismatch');
  const { prompt, params, session, grantId } = details;

  if (req.method === 'GET') {
    if (prompt.name === 'login') {
      return send(res, 200, page('Sign in', `<form id="login-form" method="post" action="/interaction/${uid}/login">
<input id="login" type="text" name="login" placeholder="login" value="${escape(params.login_hint ?? '')}" autofocus required>
<input id="password" type="password" name="password" placeholder="any password">
<button id="sign-in" type="submit">Sign in</button>
</form>`));
    }
    const scopes = prompt.details.missingOIDCScope ?? [];
    return send(res, 200, page('Allow access', `<p>${escape(params.client_id)} asks for: ${escape(scopes.join(' '))}</p>
<form id="consent-form" method="post" action="/interaction/${uid}/confirm">
<button id="allow" type="submit">Allow</button>
</form>
<form method="post" action="/interaction/${uid}/abort">
<button id="deny" type="submit">Deny</button>
</form>`));
  }

  const form = new URLSearchParams(await body(req));
  if (action === 'login' && prompt.name === 'login') {
    const account = accounts.find((candidate) => candidate.login === form.get('login'));
    // An unknown login ends the attempt (the client gets error=access_denied), so a test sees
    // it at once instead of a login page shown again.
    const result = account
      ? { login: { accountId: account.sub } }
      : { error: 'access_denied', error_description: 'unknown login' };
    return provider.interactionFinished(req, res, result, { mergeWithLastSubmission: false });
  }
  if (action === 'confirm' && prompt.name === 'consent') {
    // What oidc-provider's devInteractions do: grant what the prompt says is missing.
    const grant = grantId
      ? await provider.Grant.find(grantId)
      : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
    const { missingOIDCScope, missingOIDCClaims, missingResourceScopes } = prompt.details;
    if (missingOIDCScope) grant.addOIDCScope(missingOIDCScope.join(' '));
    if (missingOIDCClaims) grant.addOIDCClaims(missingOIDCClaims);
    for (const [indicator, scopes] of Object.entries(missingResourceScopes ?? {})) {
      grant.addResourceScope(indicator, scopes.join(' '));
    }
    return provider.interactionFinished(req, res, { consent: { grantId: await grant.save() } });
  }
  if (action === 'abort') {
    return provider.interactionFinished(req, res, {
      error: 'access_denied', error_description: 'the user denied access',
    }, { mergeWithLastSubmission: false });
  }
  return send(res, 400, page('Error', `<p>no ${escape(action)} at the ${escape(prompt.name)} prompt</p>`));
}

function body(req) {
  return new Promise((resolve, reject) => {
    let text = '';
    req.setEncoding('utf8');
    req.on('data', (chunk) => { text += chunk; });
    req.on('end', () => resolve(text));
    req.on('error', reject);
  });
}

const server = createServer((req, res) => {
  const path = new URL(req.url, 'http://x').pathname;
  const match = /^\/interaction\/([^/]+)(?:\/(login|confirm|abort))?$/.exec(path);
  const wanted = match && (req.method === 'GET') === !match[2];
  if (!wanted) return callback(req, res);
  return interaction(req, res, match[1], match[2]).catch((err) => {
    console.error('interaction failed:', err);
    if (!res.headersSent) send(res, 400, page('Error', `<p id="error">${escape(err.message)}</p>`));
  });
});

// Listen first: the issuer must carry the port the system picked.
server.listen(0, '127.0.0.1', () => {
  const issuer = `http://127.0.0.1:${server.address().port}`;
  provider = new Provider(issuer, configuration);
  callback = provider.callback();
  for (const event of ['server_error', 'authorization.error', 'grant.error', 'end_session.error', 'backchannel.error']) {
    provider.on(event, (_ctx, err) => console.error(`${event}:`, err));
  }
  provider.on('backchannel.success', (_ctx, client, accountId, sid) => {
    console.log(`back-channel logout sent to ${client.clientId} (sub ${accountId}, sid ${sid})`);
  });
  // Written whole, then renamed: a reader never sees half an address.
  writeFileSync(`${config.addr_file}.tmp`, issuer);
  renameSync(`${config.addr_file}.tmp`, config.addr_file);
  console.log(`oidc-provider listening, issuer ${issuer}`);
});
