import type http from 'node:http';
import { z } from 'zod';
import type { GatewayServices } from '../../gateway/services.ts';
import type { Route } from '../../api/route.ts';
import { ApiError, errorResponse, parseBody, readJson, sendJson } from '../../api/http.ts';
import { createPublicKey } from 'node:crypto';
import { parseOpenSshPrivateKey } from '../openssh-privkey.ts';
import { formatPublicKeyLine, fromKeyObject } from '../ssh-keys.ts';
import type { OidcConfig } from './config.ts';
import { OidcLogin, OidcStartRefused, reachableTargets, type LoginResult, type LoginSource } from './login.ts';
import { OidcLoginError } from './id-token.ts';
import { clientAddress } from '../../api/client-address.ts';

/**
 * The API endpoints of `vigil login`, `vigil status` and `vigil logout`. The login endpoints need no
 * client certificate (the caller has none yet: that is what they are for); what proves the caller is the
 * IdP's answer, checked by OidcLogin. Status and logout are ordinary mTLS routes.
 */

const Keys = { ssh_public_key: z.string().min(1).max(4096), x509_public_key: z.string().min(1).max(4096) };
const StartBody = z.strictObject({ ...Keys, redirect_uri: z.string().min(1).max(2048) });
const FinishBody = z.strictObject({ login_id: z.string().min(1).max(128), callback_url: z.string().min(1).max(8192) });
const DeviceBody = z.strictObject(Keys);
const PollBody = z.strictObject({ login_id: z.string().min(1).max(128) });

export const LOGIN_PREFIX = '/v1/login/';
/** Refusals anyone can cause without talking to the IdP: counted against the source's refusal budget. */
const CHEAP_REFUSALS = new Set(['login_unknown', 'login_expired', 'malformed', 'state_mismatch', 'bad_keys']);

export interface LoginEndpoints {
  /** Handles `req` when it is a login endpoint; false: not ours, authenticate as usual. */
  handle(req: http.IncomingMessage, res: http.ServerResponse, path: string): Promise<boolean>;
}

/** What the CLI needs to configure stock clients after a login. */
function loginView(services: GatewayServices, ports: Record<string, number>, r: LoginResult) {
  const c = r.credentials;
  const targets = reachableTargets(services.config, r.identity.roles).map((t) => ({
    name: t.name,
    protocol: t.protocol,
    ...(t.protocol === 'ssh' ? { login: (t.default_login as string | undefined) ?? ((t.logins as string[] | undefined) ?? []).find((l) => l !== '*') ?? null } : {}),
    ...(t.protocol === 'postgres' || t.protocol === 'mysql' ? { database: (t.database as string | undefined) ?? null } : {}),
  }));
  return {
    user: r.identity.user,
    roles: r.identity.roles,
    groups: r.identity.groups,
    subject: r.identity.subject,
    certificate: {
      serial: c.serial,
      not_before: c.notBefore.toISOString(),
      not_after: c.notAfter.toISOString(),
      ssh_certificate: c.sshCertificate,
      x509_certificate: c.x509Certificate,
      ca_certificate: c.caCertificate,
    },
    gateway: {
      ports: { ssh: ports.ssh ?? null, postgres: ports.postgres ?? null, mysql: ports.mysql ?? null, api: ports.api ?? null },
      ssh_host_key: formatPublicKeyLine(fromKeyObject(createPublicKey(parseOpenSshPrivateKey(services.identity.sshHostKey()).privateKey))),
      ssh_host_ca: services.identity.sshHostCaPublicKey(),
    },
    targets,
  };
}

/**
 * `_admitRefusal` is the API's budget of refused calls; sign-in refusals are budgeted where they are
 * recorded (OidcLogin, on the gateway's per-source budget), so that one decides both the record and the 429.
 */
export function loginEndpoints(services: GatewayServices, ports: Record<string, number>, _admitRefusal?: (ip: string) => boolean): LoginEndpoints {
  const cfg = (services.config.identity as { oidc?: OidcConfig } | undefined)?.oidc;
  const roleMap = () => (services.config.identity as { oidc?: OidcConfig } | undefined)?.oidc?.role_map ?? cfg!.role_map;
  const login = cfg ? new OidcLogin(cfg, { config: services.config, identity: services.identity, events: services.events, roleMap, ...(services.refusals ? { refusals: services.refusals } : {}) }) : undefined;

  async function route(path: string, req: http.IncomingMessage, source: LoginSource): Promise<[number, unknown]> {
    if (!login) throw new ApiError(404, 'VIGIL_OIDC_DISABLED', 'Sign-in with an identity provider is not configured on this gateway (identity.oidc).');
    if (req.method !== 'POST') throw new ApiError(405, 'VIGIL_BAD_METHOD', `${req.method} is not supported on ${path}.`);
    switch (path) {
      case '/v1/login/start': {
        const b = parseBody(StartBody, await readJson(req));
        const s = await login.startCode({ sshPublicKey: b.ssh_public_key, x509PublicKey: b.x509_public_key }, b.redirect_uri, source);
        return [201, { login_id: s.loginId, authorization_url: s.authorizationUrl, expires_at: s.expiresAt.toISOString() }];
      }
      case '/v1/login/finish': {
        const b = parseBody(FinishBody, await readJson(req));
        return [200, { login: loginView(services, ports, await login.finishCode(b.login_id, b.callback_url, source)) }];
      }
      case '/v1/login/device': {
        const b = parseBody(DeviceBody, await readJson(req));
        const d = await login.startDevice({ sshPublicKey: b.ssh_public_key, x509PublicKey: b.x509_public_key }, source);
        return [201, { login_id: d.loginId, user_code: d.userCode, verification_uri: d.verificationUri, verification_uri_complete: d.verificationUriComplete ?? null, interval: d.intervalSec, expires_at: d.expiresAt.toISOString() }];
      }
      case '/v1/login/device/poll': {
        const b = parseBody(PollBody, await readJson(req));
        const r = await login.pollDevice(b.login_id, source);
        return r === 'pending' ? [202, { pending: true }] : [200, { login: loginView(services, ports, r) }];
      }
      default:
        throw new ApiError(404, 'VIGIL_NO_ROUTE', `No API endpoint ${path}.`);
    }
  }

  return {
    async handle(req, res, path) {
      if (!path.startsWith(LOGIN_PREFIX)) return false;
      const source = clientAddress(req.socket);
      try {
        const [status, body] = await route(path, req, source);
        sendJson(res, status, body);
      } catch (e) {
        if (e instanceof OidcStartRefused) {
          // Too many starts from the source (summarised in its auth.failure.summary), or the gateway is full.
          res.setHeader('retry-after', String(e.retryAfterSec));
          sendJson(res, e.status, { error: { code: e.status === 429 ? 'VIGIL_RATE_LIMITED' : 'VIGIL_BUSY', reason: e.reason, message: e.message } });
          return true;
        }
        if (e instanceof OidcLoginError) {
          // Refused sign-ins are on the record (auth.oidc.failure, or its source's summary once over budget);
          // a cheap one over budget is answered 429.
          if (CHEAP_REFUSALS.has(e.reason) && e.suppressed) {
            sendJson(res, 429, { error: { code: 'VIGIL_RATE_LIMITED', message: 'Too many refused sign-ins from your address; try again later.' } });
            return true;
          }
          sendJson(res, e.reason === 'idp_unreachable' ? 502 : 401, { error: { code: e.code, reason: e.reason, message: e.message } });
          return true;
        }
        const r = errorResponse(e);
        if (r.status === 500) services.log.error({ err: e, path }, 'api: login endpoint failed');
        sendJson(res, r.status, { error: { code: r.code, message: r.message } });
      }
      return true;
    },
  };
}

/** `vigil status` and `vigil logout`: who the caller's certificate says they are, and revoking it. */
export const SELF_ROUTES: Route[] = [
  {
    method: 'GET',
    pattern: '/v1/me',
    async handle({ actor, services, access }) {
      const issued = actor.certSerial ? await services.store.getIssuedCert(actor.certSerial) : undefined;
      const mine = (await access.list(actor, { user: actor.user })).filter((r) => r.user === actor.user);
      return [
        200,
        {
          user: actor.user,
          roles: actor.roles,
          cert_serial: actor.certSerial ?? null,
          not_after: issued?.notAfter ?? null,
          grants: mine.filter((r) => r.state === 'active'),
          requests: mine.filter((r) => r.state === 'pending'),
        },
      ];
    },
  },
  {
    method: 'POST',
    pattern: '/v1/me/logout',
    async handle({ actor, services }) {
      const serial = actor.certSerial;
      if (!serial) throw new ApiError(400, 'VIGIL_BAD_REQUEST', 'The calling credential has no serial to revoke.');
      const reason = 'vigil logout';
      const added = await services.store.revoke({ serial, reason, by: actor.user, time: new Date().toISOString() });
      await services.events.emit({
        type: 'cert.revoked',
        outcome: added ? 'success' : 'failure',
        actor: { user: actor.user, roles: actor.roles, cert_serial: serial },
        source: actor.source,
        target: { name: `cert/${serial}`, protocol: 'vigil' },
        details: { serial, reason, user: actor.user, kind: 'cert', known: true, ...(added ? {} : { error: 'already revoked' }) },
      });
      return [200, { revoked: serial }];
    },
  },
];
