import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Guardrails, guardrailsSchema } from '../../src/guardrails/index.ts';
import { ClientGuard, type LexMode } from '../../proxies/postgres/guardrail.ts';
import { MessageFramer } from '../../proxies/postgres/framing.ts';
import { F, cstr, encodeMessage } from '../../proxies/postgres/frontend.ts';
import { asStandardStrings, tokenize } from '../../proxies/postgres/sql.ts';
import { startWorld, serverStatements, STATEMENT_LOG, type PgWorld } from './helpers.ts';
import { waitFor } from '../support/tmp.ts';

/**
 * The guardrails' parser assumes standard_conforming_strings on; the server lexes in the session's
 * mode. With the mode off, `'a\' , '` is one literal for the server and two for the parser, so
 * `SELECT 'a\' , '; DROP TABLE t; -- '` runs a DROP the parser would call a SELECT of two literals.
 * The guard must check the text as the server will read it.
 */

const ATTACK = "SELECT 'a\\' , '; DROP TABLE lexguard_t; -- '";
/**
 * The same trick inside a body: PL/pgSQL (and a SQL function) lexes its body when it runs, in the mode of
 * the session running it. With the mode off, `'x\''` is `x'` and the DROP after it is a statement; with
 * it on, the literal runs on to the `'` after `--`. A DO runs in this session's mode; a function body in
 * its caller's, whatever the mode of the session that created it.
 */
const BODY = "BEGIN PERFORM 'x\\'' ; DROP TABLE lexguard_t; --';\nEND";
const DO_ATTACK = `DO $$${BODY}$$`;
const FN_ATTACK = `CREATE FUNCTION lexguard_f() RETURNS void LANGUAGE plpgsql AS $$${BODY}$$`;
const SQL_FN_ATTACK = "CREATE FUNCTION lexguard_g() RETURNS void LANGUAGE sql AS $$SELECT 'x\\'' ; DROP TABLE lexguard_t; --'$$";
/** An EXECUTE'd literal is lexed when it runs, too (dollar-quoted: the body itself reads alike both ways). */
const EXECUTE_ATTACK = `DO $$BEGIN EXECUTE $q$${ATTACK}$q$; END$$`;
const rules = [{ name: 'no-drops', targets: ['*'], roles: ['*'], sql: { block: ['drop'], on_unparsable: 'allow' } }];

describe('guardrails follow the session lexical mode (pure)', () => {
  beforeAll(() => Guardrails.ready());

  it('rewrites backslash-holding strings so a standard-strings lexer reads them as the server does', () => {
    expect(asStandardStrings(ATTACK)).toBe("SELECT E'a\\' , '; DROP TABLE lexguard_t; -- '");
    expect(asStandardStrings("SELECT N'x\\'y', interval'1\\'' , 'plain', $$a\\$$")).toBe("SELECT E'x\\'y', interval E'1\\'' , 'plain', $$a\\$$");
    // Same tokens either way: the rewritten text under the on mode is the original under the off mode.
    const t = (s: string, scs: boolean) => tokenize(s, scs).map((x) => x.kind).join(' ');
    expect(t(asStandardStrings(ATTACK), true)).toBe(t(ATTACK, false));
  });

  it('refuses when the mode is off, or may be (a change in flight); allows the same text with the mode on', () => {
    const session = new Guardrails(guardrailsSchema().parse(rules)).forSession({ roles: ['dev'], target: 'pg' })!;
    const decide = (mode: LexMode) => {
      const refused: string[] = [];
      const guard = new ClientGuard(new MessageFramer({ maxLength: 1 << 20 }), session, () => {}, (r) => refused.push(r.decision.reason), () => mode);
      const out = guard.push(encodeMessage(F.Query, cstr(ATTACK)));
      return { refused, forwarded: out.toString('utf8').includes('DROP TABLE') };
    };
    expect(decide({ scs: true, encoding: 'UTF8' })).toEqual({ refused: [], forwarded: true });
    expect(decide({ scs: false, encoding: 'UTF8' })).toEqual({ refused: ['DROP'], forwarded: false });
    expect(decide({ scs: undefined, encoding: 'UTF8' })).toEqual({ refused: ['DROP'], forwarded: false });
  });

  const decideText = (sql: string, scs: boolean | undefined) => {
    const session = new Guardrails(guardrailsSchema().parse(rules)).forSession({ roles: ['dev'], target: 'pg' })!;
    const refused: string[] = [];
    const guard = new ClientGuard(new MessageFramer({ maxLength: 1 << 20 }), session, () => {}, (r) => refused.push(r.decision.reason), () => ({ scs, encoding: 'UTF8' }));
    const out = guard.push(encodeMessage(F.Query, cstr(sql)));
    return { refused, forwarded: out.toString('utf8').includes('lexguard_t') };
  };

  it('a DO body (and what it EXECUTEs) is read both ways whatever the session mode: the mode may change before it runs', () => {
    // Prepared now and executed after a SET, or after a SET earlier in the same string (pg-review3-guard-later).
    for (const sql of [DO_ATTACK, EXECUTE_ATTACK]) for (const scs of [true, false, undefined]) expect(decideText(sql, scs), `${sql} ${scs}`).toEqual({ refused: ['DROP'], forwarded: false });
  });

  it('a function body is read in both modes whatever the session mode: it may be called with the mode off', () => {
    for (const sql of [FN_ATTACK, SQL_FN_ATTACK]) for (const scs of [true, false, undefined]) expect(decideText(sql, scs), `${sql} ${scs}`).toEqual({ refused: ['DROP'], forwarded: false });
    // Backslashes that read alike both ways change nothing.
    expect(decideText("DO $$BEGIN PERFORM 'a\\d' ~ 'x'; PERFORM 1 FROM lexguard_t; END$$", false)).toEqual({ refused: [], forwarded: true });
  });
});

describe('guardrails follow the session lexical mode (through the gateway)', () => {
  let w: PgWorld;
  beforeAll(async () => {
    w = await startWorld({ guardrails: rules.map((r) => ({ ...r, targets: ['pg'] })) }, { pgConf: STATEMENT_LOG });
    w.pg.psql('CREATE TABLE lexguard_t (id int); GRANT ALL ON lexguard_t TO scram_user');
  }, 120_000);
  afterAll(async () => {
    await w?.stop();
  });

  it('SET standard_conforming_strings = off, then the smuggled DROP: refused with 42501, never run', async () => {
    const app = 'lexguard';
    // Two -c: two Query messages, the second lexed by the server with the mode off.
    const r = await w.psql(['-v', 'VERBOSITY=verbose', '-c', 'SET standard_conforming_strings = off', '-c', ATTACK], { env: { PGAPPNAME: app } });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('42501');
    expect(r.stderr).toContain('vigil guardrail "no-drops" refused this statement (DROP)');
    expect(w.pg.psql("SELECT to_regclass('lexguard_t') IS NOT NULL")).toBe('t');
    // The server received the SET and the refusal in its place, never the text with the DROP.
    const got = await waitFor(() => {
      const l = serverStatements(w.pg, 'scram_user', (x) => x.application_name === `alice via ${app}`).map((s) => s.sql);
      return l.length >= 2 ? l : undefined;
    });
    expect(got[0]).toBe('SET standard_conforming_strings = off');
    expect(got.slice(1).every((s) => s.startsWith('DO $vigil_guardrail$'))).toBe(true);
    const ev = await w.tg.waitForEvent((e) => e.type === 'guardrail.blocked' && e.details?.sql === ATTACK);
    expect(ev.details).toMatchObject({ rule: 'no-drops', reason: 'DROP' });
  });

  it('SET standard_conforming_strings = off, then a DO whose body hides a DROP: refused with 42501, never run', async () => {
    const r = await w.psql(['-v', 'VERBOSITY=verbose', '-c', 'SET standard_conforming_strings = off', '-c', DO_ATTACK]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('42501');
    expect(r.stderr).toContain('vigil guardrail "no-drops" refused this statement (DROP)');
    expect(w.pg.psql("SELECT to_regclass('lexguard_t') IS NOT NULL")).toBe('t');
    await w.tg.waitForEvent((e) => e.type === 'guardrail.blocked' && e.details?.sql === DO_ATTACK);
  });

  it('a function whose body hides a DROP, created with the mode on: refused, so a caller with the mode off cannot run it', async () => {
    w.pg.psql('GRANT CREATE ON SCHEMA public TO scram_user');
    const r = await w.psql(['-v', 'VERBOSITY=verbose', '-c', 'SHOW standard_conforming_strings', '-c', FN_ATTACK]);
    expect(r.stdout).toContain('on');
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('42501');
    expect(r.stderr).toContain('vigil guardrail "no-drops" refused this statement (DROP)');
    const call = await w.psql(['-c', 'SET standard_conforming_strings = off', '-c', 'SELECT lexguard_f()']);
    expect(call.code).not.toBe(0);
    expect(call.stderr).toContain('lexguard_f() does not exist');
    expect(w.pg.psql("SELECT to_regclass('lexguard_t') IS NOT NULL")).toBe('t');
  });
});
