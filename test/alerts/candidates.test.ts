import { describe, expect, it } from 'vitest';
import { AlertEngine, type Firing } from '../../src/alerts/engine.ts';
import { alertRulesSchema } from '../../src/alerts/config.ts';
import { createEvent, type AuditEvent, type EventInput } from '../../src/events/envelope.ts';

/**
 * The engine narrows each event to candidate rules before queueing it: by type, by target (once per target
 * object), and with one combined scan for all command regexes. These tests check that the narrowing never
 * changes which rules fire: every rule must fire exactly when its own conditions, tested alone, hold.
 */
async function engineWith(rules: Record<string, unknown>[], labels: Record<string, Record<string, string>> = {}) {
  const fired: Firing[] = [];
  const engine = new AlertEngine(alertRulesSchema().parse(rules), { labelsOf: (t) => labels[t.name], onFire: async (f) => void fired.push(f) });
  let deliver: (e: AuditEvent) => void = () => {};
  await engine.start({ subscribe: (fn: (e: AuditEvent) => void) => ((deliver = fn), () => {}) } as never);
  const send = async (input: Partial<EventInput> & Pick<EventInput, 'type'>) => {
    deliver(createEvent({ outcome: 'success', actor: { user: 'alice', roles: ['dba'] }, source: { ip: '192.0.2.1', port: 1 }, target: { name: 'pg', protocol: 'postgres' }, details: {}, ...input } as EventInput));
    await engine.idle();
  };
  return { engine, fired, send };
}

describe('alert rule candidates', () => {
  it('one scan for all command regexes fires exactly the rules whose own regex matches, backreferences and named groups included', async () => {
    // Two sets: a regex with a duplicate group name cannot even be built, which would hide whether the
    // backreferences of the first set are handled.
    const sets: Record<string, string>[] = [
      {
        first: '(t)runcate', // group 1 of a combined regex
        pair: '(x)(y)\\2', // combined right after `first`, \\2 would be its own first group: no match on xyy
        drop: '\\bdrop\\s+table\\b',
        rm: '^rm\\s+-rf\\b',
        twice: '\\b(\\w+)\\s+\\1\\b', // a backreference: \\1 would mean the group of `first` once combined
        behind: '(?<!no)shutdown', // lookbehind is not a named group
      },
      {
        kill1: '(?<verb>kill)\\s+\\d+', // two rules with the same group name cannot share one regex
        kill2: '(?<verb>kill)\\s+-9',
        trunc: 'truncate',
        plain: 'the',
      },
    ];
    const texts = [
      'SELECT 1', 'DROP   TABLE t', 'drop tablespace x', 'rm -rf /', ' rm -rf /', 'the the cat', 'kill 42', 'kill -9 42', 'TRUNCATE t',
      'noshutdown', 'shutdown now', 'select kill 7 from the the', 't t', 'truncate truncate', 'xyy', 'xyx', '',
    ];
    for (const patterns of sets) {
      const { fired, send } = await engineWith(Object.entries(patterns).map(([name, command]) => ({ name, match: { type: ['db.query', 'ssh.exec'], command } })));
      for (const [i, text] of texts.entries()) {
        const before = fired.length;
        await send(i % 2 ? { type: 'ssh.exec', target: { name: 'web', protocol: 'ssh' }, details: { command: text } } : { type: 'db.query', details: { sql: text } });
        const expected = Object.entries(patterns).filter(([, p]) => new RegExp(p, 'i').test(text)).map(([n]) => n).sort();
        expect(fired.slice(before).map((f) => f.rule).sort(), text).toEqual(expected);
      }
    }
    const { fired, send } = await engineWith([{ name: 'drop', match: { type: 'db.query', command: 'drop' } }, { name: 'rm', match: { type: 'db.query', command: 'rm' } }]);
    // An event without a text never matches a command rule.
    const before = fired.length;
    await send({ type: 'db.query', details: { rows: 1 } });
    expect(fired.length).toBe(before);
  });

  it('target conditions are decided per target object, and each new target object is judged afresh', async () => {
    const labels = { 'prod-pg': { env: 'prod' }, 'stage-pg': { env: 'stage' } };
    const { fired, send } = await engineWith(
      [
        { name: 'prod-any', match: { type: 'db.query', target_labels: { env: 'prod' } } },
        { name: 'stage-drop', match: { type: 'db.query', target_labels: { env: 'stage' }, command: 'drop' } },
        { name: 'named', match: { type: 'db.query', target: 'stage-pg', command: 'delete' } },
      ],
      labels,
    );
    const prod = { name: 'prod-pg', protocol: 'postgres' };
    const stage = { name: 'stage-pg', protocol: 'postgres' };
    // The same target object again and again (as a session sends it), then fresh objects with the same names.
    for (const target of [prod, prod, stage, stage, { ...prod }, { ...stage }, { name: 'other', protocol: 'postgres' }]) {
      for (const sql of ['select 1', 'drop table t', 'delete from t']) {
        const before = fired.length;
        await send({ type: 'db.query', target, details: { sql } });
        const env = labels[target.name as keyof typeof labels]?.env;
        const expected = [
          ...(env === 'prod' ? ['prod-any'] : []),
          ...(env === 'stage' && sql.includes('drop') ? ['stage-drop'] : []),
          ...(target.name === 'stage-pg' && sql.includes('delete') ? ['named'] : []),
        ];
        expect(fired.slice(before).map((f) => f.rule).sort(), `${target.name}: ${sql}`).toEqual(expected.sort());
      }
    }
  });
});
