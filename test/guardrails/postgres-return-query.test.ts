import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Guardrails, guardrailsSchema } from '../../src/guardrails/index.ts';
import { analysePostgres } from '../../src/guardrails/sql-postgres.ts';
import { startWorld, type PgWorld } from '../postgres/helpers.ts';

/**
 * RETURN QUERY EXECUTE runs a string computed at run time, like EXECUTE: a function body holding one
 * with anything but a single literal cannot be checked before it runs, so it is refused when a rule
 * refuses what it cannot check (the README says so of format()). Without that, the body below passes as
 * harmless, and `SELECT count(*) FROM f()` then deletes the rows of a table the rule protects.
 */

const ATTACK =
  "CREATE FUNCTION rq_f() RETURNS SETOF int LANGUAGE plpgsql AS $$BEGIN RETURN QUERY EXECUTE format('DELETE FROM %I.%I RETURNING 1', 'payments', 'cards'); END$$";
const rule = { name: 'no-drops', roles: ['*'], sql: { block: ['drop', 'delete_without_where'], block_writes_to: ['payments.cards'], on_unparsable: 'refuse' } };

describe('RETURN QUERY EXECUTE (pure)', () => {
  beforeAll(() => Guardrails.ready());

  it('a computed string is unparsable; a literal one is checked; a static RETURN QUERY is not dynamic', () => {
    expect(analysePostgres(ATTACK).unparsable).toMatch(/dynamic SQL/);
    const literal = analysePostgres("CREATE FUNCTION f() RETURNS SETOF int LANGUAGE plpgsql AS $$BEGIN RETURN QUERY EXECUTE 'DELETE FROM payments.cards RETURNING 1'; END$$");
    expect(literal.unparsable).toBeUndefined();
    expect(literal.writes).toEqual([{ schema: 'payments', table: 'cards' }]);
    expect([...literal.kinds]).toEqual(['delete_without_where']);
    const plain = analysePostgres('CREATE FUNCTION f() RETURNS SETOF int LANGUAGE plpgsql AS $$BEGIN RETURN QUERY SELECT 1; END$$');
    expect(plain.unparsable).toBeUndefined();
    expect(plain.kinds.size + plain.writes.length).toBe(0);
    // The static query is still looked into.
    const stat = analysePostgres('CREATE FUNCTION f() RETURNS SETOF int LANGUAGE plpgsql AS $$BEGIN RETURN QUERY WITH d AS (DELETE FROM payments.cards RETURNING 1) SELECT * FROM d; END$$');
    expect(stat.writes).toEqual([{ schema: 'payments', table: 'cards' }]);
  });

  it('the session guard refuses the CREATE as unparsed', () => {
    const s = new Guardrails(guardrailsSchema().parse([{ ...rule, targets: ['*'] }])).forSession({ roles: ['dev'], target: 'pg' })!;
    expect(s.checkSql(ATTACK, 'postgres')).toMatchObject({ action: 'block', rule: 'no-drops', unparsed: true });
  });
});

describe('RETURN QUERY EXECUTE through the gateway', () => {
  let w: PgWorld;
  beforeAll(async () => {
    w = await startWorld({ guardrails: [{ ...rule, targets: ['pg'] }] });
    w.pg.psql(
      "CREATE SCHEMA payments; CREATE TABLE payments.cards (n text); INSERT INTO payments.cards VALUES ('4111'), ('5500'); GRANT ALL ON SCHEMA payments TO scram_user; GRANT ALL ON payments.cards TO scram_user; GRANT CREATE ON SCHEMA public TO scram_user",
    );
  }, 120_000);
  afterAll(async () => {
    await w?.stop();
  });

  it('the CREATE is refused with 42501 (unparsable); calling it then fails; the rows survive', async () => {
    const r = await w.psql(['-v', 'VERBOSITY=verbose', '-c', ATTACK]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('42501');
    expect(r.stderr).toContain('vigil guardrail "no-drops" refused this statement (unparsable: dynamic SQL');
    const call = await w.psql(['-c', 'SELECT count(*) FROM rq_f()']);
    expect(call.code).not.toBe(0);
    expect(call.stderr).toContain('rq_f() does not exist');
    expect(w.pg.psql('SELECT count(*) FROM payments.cards')).toBe('2');
    await w.tg.waitForEvent((e) => e.type === 'guardrail.unparsed' && e.details?.sql === ATTACK);
  });
});
