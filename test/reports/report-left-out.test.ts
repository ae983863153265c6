import fs from 'node:fs';
import https from 'node:https';
import path from 'node:path';
import { describe, it, expect, afterAll } from 'vitest';
import { startTestGateway } from '../support/gateway.ts';
import { ConsoleClient, ensureConsole } from '../support/console.ts';
import { tempDir } from '../support/tmp.ts';
import { runCliCaptured } from '../support/cli.ts';
import { dataPaths } from '../../src/data-dir.ts';
import { openAuditLog, searchAuditLog } from '../../recorder/audit/index.ts';
import { parseConfig } from '../../app/config.ts';
import { initIdentity } from '../../src/identity/ca.ts';
import type { ReportModel } from '../../recorder/reports/model.ts';
import { auditOptions, sampleEvent } from '../recorder/helpers.ts';

/**
 * A report reads the period's events through the same reader as `audit export`, which leaves out a record
 * whose bytes no longer match its hash. The report must say how many it left out, in every format and in
 * its report.generated event, not quietly count one statement fewer. A real audit log, the vigil CLI.
 */

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

describe('report of a period holding a record whose bytes fail their hash', () => {
  it('says in HTML, Markdown and JSON, and in its report.generated event, that one record was left out', async () => {
    const base = tempDir('vigil-report-leftout-');
    dirs.push(base);
    const dataDir = path.join(base, 'data');
    await initIdentity(dataDir, parseConfig({ data_dir: dataDir }, base));
    const paths = dataPaths(dataDir);
    const t0 = Date.now() - 3600_000;
    const w = await openAuditLog(paths.audit, auditOptions(paths.auditSigningKey));
    for (let i = 1; i <= 3; i++) await w.append(sampleEvent(i, { time: new Date(t0 + i * 1000), details: { statement: `DELETE FROM orders WHERE id = ${i}` } }));
    await w.close();
    // Someone with write access to the data dir (not the key) rewrites one statement: still valid JSON.
    const segment = fs.readdirSync(paths.audit).find((f) => f.endsWith('.jsonl'))!;
    const file = path.join(paths.audit, segment);
    fs.writeFileSync(file, fs.readFileSync(file, 'utf8').replace('DELETE FROM orders WHERE id = 2', 'SELECT 1 FROM orders WHERE id = 2'));

    const render = async (format: string) => {
      const out = path.join(base, `report.${format}`);
      const r = await runCliCaptured(['report', 'access', '--data', dataDir, '--since', '3h', '--format', format, '--out', out]);
      expect(r.code, r.err).toBe(0);
      return fs.readFileSync(out, 'utf8');
    };
    const said = /1 record\(s\) of the period LEFT OUT of this report: their bytes do not match their hash/;

    const json = JSON.parse(await render('json')) as ReportModel;
    expect(json.verification.records_left_out).toBe(1);
    // Only the two intact records are counted.
    expect(json.summary.events).toBe(2);
    const html = await render('html');
    expect(html).toMatch(/<p class="chain bad" id="verification" data-status="[^"]*" data-records-left-out="1">/);
    expect(html).toMatch(said);
    expect(await render('md')).toMatch(said);

    const events = (await searchAuditLog(paths.audit, { type: 'report.generated' })).records.map((r) => r.event.details as Record<string, unknown>);
    expect(events.map((d) => [d.format, d.records_left_out])).toEqual([['json', 1], ['html', 1], ['md', 1]]);
  });
});

describe('console export of a period holding a record whose bytes fail their hash', () => {
  it('says how many records it left out (trailer) and puts that on the record', async () => {
    await ensureConsole();
    const base = tempDir('vigil-console-leftout-');
    dirs.push(base);
    const tg = await startTestGateway({ roles: [{ name: 'auditor' }] }, base);
    try {
      const audrey = await tg.issue({ user: 'audrey', roles: ['auditor'] });
      const actor = { user: 'mallory', roles: [] };
      const source = { ip: '127.0.0.1', port: 40000 };
      const target = { name: 'pg-prod', protocol: 'postgres' };
      for (const statement of ['DROP TABLE evidence_one', 'DROP TABLE evidence_two']) {
        await tg.gw.services.events.emit({ type: 'db.query', outcome: 'success', actor, source, target, session_id: 'S-drop', details: { statement } });
      }
      const audit = dataPaths(tg.dataDir).audit;
      await tg.waitForEvent((e) => e.type === 'db.query' && (e.details as { statement?: string }).statement === 'DROP TABLE evidence_two');
      // Rewritten in place, same length (the gateway keeps appending to the file meanwhile).
      const segment = path.join(audit, fs.readdirSync(audit).filter((f) => f.endsWith('.jsonl')).sort().at(-1)!);
      const at = fs.readFileSync(segment).indexOf('DROP TABLE evidence_one');
      expect(at).toBeGreaterThan(0);
      const fd = fs.openSync(segment, 'r+');
      fs.writeSync(fd, Buffer.from('SELECT 1 AS evidenceone'), 0, 23, at);
      fs.closeSync(fd);

      const c = new ConsoleClient(`https://127.0.0.1:${tg.ports.api}`, audrey.creds.caCertificate, { cert: audrey.creds.x509Certificate, key: audrey.creds.x509PrivateKey });
      expect((await c.signIn()).status).toBe(200);
      const got = await new Promise<{ status: number; body: string; trailers: NodeJS.Dict<string> }>((resolve, reject) => {
        const req = https.request(`${c.base}/console/api/events/export?format=jsonl&user=mallory`, { ca: c.ca, agent: false, headers: { cookie: c.cookie! } }, (res) => {
          let body = '';
          res.on('data', (d) => (body += d));
          res.on('end', () => resolve({ status: res.statusCode!, body, trailers: res.trailers }));
        });
        req.on('error', reject);
        req.end();
      });
      expect(got.status).toBe(200);
      expect(got.body).toContain('evidence_two');
      expect(got.body).not.toContain('evidenceone');
      expect(got.trailers['x-vigil-records-left-out']).toBe('1');
      await tg.waitForEvent((e) => e.type === 'console.view' && e.outcome === 'failure' && (e.details as { left_out?: number }).left_out === 1);
    } finally {
      await tg.stop();
    }
  });
});
