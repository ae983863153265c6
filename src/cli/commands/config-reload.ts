import https from 'node:https';
import type { Command, CommandArgs } from '../command.ts';
import { UsageError, stringOpt } from '../command.ts';
import { VigilError } from '../../errors.ts';
import { apiBaseUrl, gatewayRequest, readOptionFile, requestTimeoutMs, TIMEOUT_OPTION } from '../gateway-request.ts';
import type { ReloadReport } from '../../gateway/reload-report.ts';

/**
 * `vigil config reload`: asks a running gateway (through its API, as an administrator's client
 * certificate) to re-read its config file. Same effect as `kill -HUP <gateway pid>`, but answers with what
 * changed, what needs a restart and which live sessions were cut, or which key is wrong.
 */

async function postReload(base: URL, tls: { cert: Buffer; key: Buffer; ca: Buffer }, timeoutMs: number): Promise<{ status: number; body: { reload?: ReloadReport; error?: { code: string; message: string } } }> {
  const agent = new https.Agent({ ...tls, keepAlive: false });
  const { status, text } = await gatewayRequest({ base, method: 'POST', path: '/v1/config/reload', body: {}, agent, timeoutMs });
  try {
    return { status, body: JSON.parse(text) };
  } catch {
    throw new VigilError('VIGIL_API_PROTOCOL', `the API answered ${status} without JSON`);
  }
}

const list = (xs: string[] | undefined) => (xs && xs.length ? xs.join(', ') : '-');

function printReport(args: CommandArgs, r: ReloadReport): void {
  const w = (s: string) => args.out.write(s + '\n');
  w(`configuration reloaded from ${r.file}`);
  w(`  digest: ${r.digest?.old.slice(0, 12)} -> ${r.digest?.new.slice(0, 12)}`);
  for (const [what, c] of [['targets', r.targets], ['roles', r.roles], ['alerts', r.alerts]] as const) {
    if (c) w(`  ${what}: added ${list(c.added)}; removed ${list(c.removed)}; changed ${list(c.changed)}`);
  }
  w(`  applied sections: ${list(r.applied)}`);
  for (const x of r.restart_required ?? []) w(`  RESTART NEEDED ${x.key}: ${x.why}`);
  for (const s of r.sessions_cut ?? []) w(`  session ${s.id} cut (${s.user} on ${s.protocol}/${s.target}: ${s.reason})`);
}

export const configReloadCommand: Command = {
  name: 'config reload',
  summary: 'Make a running gateway re-read its config file (like SIGHUP); admins only.',
  usage: '[--api URL --cert F --key F --ca F] [--json]\n\nNew targets, roles, rules and limits apply to new sessions; live sessions keep running unless their role or target no longer allows them. An invalid file changes nothing and the wrong key is named (exit 1). Listeners that moved need a restart and are listed.',
  options: {
    api: { type: 'string', arg: 'URL', help: 'the running gateway\'s API (default: $VIGIL_API)' },
    cert: { type: 'string', arg: 'FILE', help: 'an administrator\'s client certificate (default: $VIGIL_CERT)' },
    key: { type: 'string', arg: 'FILE', help: 'private key of --cert (default: $VIGIL_KEY)' },
    ca: { type: 'string', arg: 'FILE', help: 'CA certificate the API server is checked against (default: $VIGIL_CA)' },
    ...TIMEOUT_OPTION,
    json: { type: 'boolean' },
  },
  examples: ['config reload --api https://127.0.0.1:8443 --cert ~/.vigil/root.crt --key ~/.vigil/root.key --ca ~/.vigil/ca.crt'],
  async run(args) {
    const v = args.values;
    const opt = (flag: string, env: string) => {
      const x = stringOpt(v, flag) ?? process.env[env];
      if (!x) throw new UsageError(`--${flag} (or ${env}) is required: the reload goes through the running gateway's API`);
      return { value: x, name: stringOpt(v, flag) ? `--${flag}` : env };
    };
    const file = (flag: string, env: string) => {
      const o = opt(flag, env);
      return readOptionFile(o.value, o.name);
    };
    const api = opt('api', 'VIGIL_API');
    const base = apiBaseUrl(api.value, api.name);
    const { status, body } = await postReload(base, { cert: file('cert', 'VIGIL_CERT'), key: file('key', 'VIGIL_KEY'), ca: file('ca', 'VIGIL_CA') }, requestTimeoutMs(v));
    if (v.json) args.out.write(JSON.stringify(body.reload ?? body) + '\n');
    if (status === 200 && body.reload) {
      if (!v.json) printReport(args, body.reload);
      return 0;
    }
    const err = body.error ?? { code: 'VIGIL_API_ERROR', message: `HTTP ${status}` };
    if (!v.json) args.err.write(`vigil: config reload refused (${err.code}): ${err.message}${status === 422 ? '\n  the gateway keeps running with its previous configuration' : ''}\n`);
    return 1;
  },
};
