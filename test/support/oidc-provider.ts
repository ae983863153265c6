import type http from 'node:http';
import { Provider } from 'oidc-provider';
import { exportJWK, generateKeyPair, SignJWT, decodeJwt, type JWTPayload } from 'jose';
import { chromium, type Browser, type Page } from 'playwright-core';
import { freePort } from './tmp.ts';

/**
 * A real OpenID Provider (npm oidc-provider) in-process on a random loopback port, with its development
 * login and consent pages. Accounts are a mutable map login → groups (a test changes someone's groups
 * between logins). `tamper` rewrites the ID token the token endpoint sends, re-signed with the IdP's own
 * key (`resign`) or another one: how tests get tokens with a wrong audience, an expiry in the past, a bad
 * signature or another login's nonce out of a genuine IdP.
 */
export interface TestIdp {
  issuer: string;
  clientId: string;
  clientSecret: string;
  accounts: Map<string, string[]>;
  /** ID tokens the token endpoint sent, in order (before tampering). */
  issued: string[];
  tamper?: (idToken: string) => Promise<string>;
  /** Sign `payload` with the IdP's key (as the IdP would) or, with `foreign`, with a key it never published under the same kid. */
  resign(payload: JWTPayload, foreign?: boolean): Promise<string>;
  stop(): Promise<void>;
}

/**
 * `opts.redirectUris`: register these (and the CLI's loopback callback) for a web client instead of the
 * native one: the web console's https callback on the gateway is not a loopback http URI.
 */
export async function startTestIdp(accounts: Record<string, string[]>, opts: { redirectUris?: string[] } = {}): Promise<TestIdp> {
  const port = await freePort();
  const issuer = `http://127.0.0.1:${port}`;
  const { privateKey } = await generateKeyPair('RS256', { extractable: true });
  const foreign = (await generateKeyPair('RS256')).privateKey;
  const jwk = { ...(await exportJWK(privateKey)), kid: 'idp-1', alg: 'RS256', use: 'sig' };
  const map = new Map(Object.entries(accounts));
  const clientId = 'vigil-gateway';
  const clientSecret = 'gw-client-secret-for-tests';
  const provider = new Provider(issuer, {
    clients: [
      {
        client_id: clientId,
        client_secret: clientSecret,
        // Native: the code comes back to the CLI's loopback listener on any port (RFC 8252 §7.3).
        application_type: opts.redirectUris ? 'web' : 'native',
        redirect_uris: ['http://127.0.0.1/callback', ...(opts.redirectUris ?? [])],
        grant_types: ['authorization_code', 'urn:ietf:params:oauth:grant-type:device_code'],
        response_types: ['code'],
        token_endpoint_auth_method: 'client_secret_basic',
      },
    ],
    jwks: { keys: [jwk] },
    cookies: { keys: ['test-cookie-key'] },
    claims: { openid: ['sub'], profile: ['preferred_username'], groups: ['groups'] },
    scopes: ['openid', 'profile', 'groups'],
    conformIdTokenClaims: false,
    features: { devInteractions: { enabled: true }, deviceFlow: { enabled: true } },
    pkce: { required: () => true },
    async findAccount(_ctx: unknown, id: string) {
      return { accountId: id, claims: () => ({ preferred_username: id, groups: map.get(id) ?? [] }) };
    },
  });
  const idp: TestIdp = {
    issuer,
    clientId,
    clientSecret,
    accounts: map,
    issued: [],
    resign: (payload, useForeign = false) => new SignJWT(payload).setProtectedHeader({ alg: 'RS256', kid: 'idp-1', typ: 'JWT' }).sign(useForeign ? foreign : privateKey),
    async stop() {
      await new Promise((r) => server.close(r));
    },
  };
  provider.use(async (ctx, next) => {
    await next();
    const body = ctx.body as { id_token?: string } | undefined;
    if (ctx.path === '/token' && ctx.method === 'POST' && body && typeof body.id_token === 'string') {
      idp.issued.push(body.id_token);
      if (idp.tamper) ctx.body = { ...body, id_token: await idp.tamper(body.id_token) };
    }
  });
  const server: http.Server = provider.listen(port, '127.0.0.1');
  await new Promise((r) => server.once('listening', r));
  return idp;
}

/** Claims of a token, for tampering. */
export const claimsOf = (jwt: string) => decodeJwt(jwt);

export async function startBrowser(): Promise<Browser> {
  return chromium.launch({
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}

/**
 * Sign in at the IdP as `login` the way a person would: open `url` (an authorization or device URL),
 * confirm a device code, fill the login form, give consent, until the IdP hands the browser elsewhere
 * (the CLI's loopback listener) or says it is done. Returns the text of the last page.
 */
export async function signInWithBrowser(browser: Browser, url: string, login: string): Promise<string> {
  const context = await browser.newContext();
  const page: Page = await context.newPage();
  try {
    await page.goto(url, { waitUntil: 'load' });
    for (let step = 0; step < 8; step++) {
      const here = new URL(page.url());
      if (here.pathname === '/callback') break;
      if (await page.locator('form[id="op.deviceConfirmForm"]').count()) {
        await Promise.all([page.waitForNavigation({ waitUntil: 'load' }), page.evaluate("document.getElementById('op.deviceConfirmForm').submit()")]);
      } else if (await page.locator('input[name="login"]').count()) {
        await page.fill('input[name="login"]', login);
        await page.fill('input[name="password"]', 'any-password');
        await Promise.all([page.waitForNavigation({ waitUntil: 'load' }), page.click('button[type="submit"]')]);
      } else if (await page.locator('input[name="prompt"][value="consent"]').count()) {
        await Promise.all([page.waitForNavigation({ waitUntil: 'load' }), page.click('button[type="submit"]')]);
      } else break;
    }
    return (await page.textContent('body')) ?? '';
  } finally {
    await context.close();
  }
}
