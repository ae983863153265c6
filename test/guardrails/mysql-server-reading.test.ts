import fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Guardrails, guardrailsSchema } from '../../src/guardrails/index.ts';
import { guardStatements } from '../../proxies/mysql/connection.ts';
import { multibyteReader, statementText } from '../../proxies/mysql/commands.ts';
import { analyzeSql, type Multibyte, type SqlMode } from '../../proxies/mysql/sql.ts';
import { startWorld, type MyWorld } from '../mysql/helpers.ts';
import { enableGeneralLog } from '../mysql/general-log.ts';

/**
 * node-sql-parser lexes with fixed rules; the server lexes with the session's: `--` is a comment only
 * before whitespace, NO_BACKSLASH_ESCAPES makes `\` an ordinary character, and in gbk 0xBF 0x5C is one
 * character, not a byte and a backslash. Given the raw text, the grammar read each attack below as one
 * harmless SELECT while the server ran a DROP. The guard now decides on the statements as the proxy's
 * server-faithful splitter splits them, each rewritten for the grammar or refused as unparsed.
 */

const rule = { name: 'no-drops', roles: ['*'], sql: { block: ['drop'], block_writes_to: ['payments.cards'], on_unparsable: 'refuse' } };
const none = () => false;
const KNOWN: SqlMode = { noBackslashEscapes: false, ansiQuotes: false };
const NBE: SqlMode = { noBackslashEscapes: true, ansiQuotes: false };

const DASHES = 'SELECT 1 --1; DROP TABLE payments.cards';
const NO_BACKSLASH = "SELECT 'a\\'; DROP TABLE payments.cards; -- '";
const gbk = Buffer.concat([Buffer.from("SELECT '"), Buffer.from([0xbf, 0x5c]), Buffer.from("'; DROP TABLE payments.cards; -- '")]);

describe('mysql guardrails read statements as the server does (pure)', () => {
  beforeAll(() => Guardrails.ready());
  const session = () => new Guardrails(guardrailsSchema().parse([{ ...rule, targets: ['*'] }])).forSession({ roles: ['dev'], target: 'my' })!;
  const decide = (sql: string, mode: SqlMode, charsets: (Multibyte | undefined)[] = [undefined]) =>
    session().checkMysqlStatements(guardStatements(sql, analyzeSql(sql, none, mode, charsets), mode, charsets));
  const reason = (d: ReturnType<typeof decide>) => (d.action === 'allow' ? 'allow' : d.reason.replace(/:.*/, ''));

  it('(a) `--1` is arithmetic to the server: the DROP after it is its own statement', () => {
    // What the raw text gave the grammar: one SELECT.
    expect(session().checkSql(DASHES, 'mysql')).toEqual({ action: 'allow' });
    expect(reason(decide(DASHES, KNOWN))).toBe('DROP');
    // Within a statement, the grammar is given the two minus signs the server reads.
    expect(guardStatements('SELECT 1 --1, 2', analyzeSql('SELECT 1 --1, 2', none, KNOWN), KNOWN)).toEqual([{ readings: ['SELECT 1 - -1, 2'] }]);
    expect(reason(decide('INSERT INTO other.t VALUES (1--1); SELECT 2', KNOWN))).toBe('allow');
  });

  it('(b) NO_BACKSLASH_ESCAPES: the literal ends at the backslash; strings are given to the grammar with it doubled', () => {
    expect(session().checkSql(NO_BACKSLASH, 'mysql')).toEqual({ action: 'allow' });
    expect(reason(decide(NO_BACKSLASH, NBE))).toBe('DROP');
    expect(guardStatements("UPDATE other.t SET x = 'a\\' WHERE x = 1", analyzeSql("UPDATE other.t SET x = 'a\\' WHERE x = 1", none, NBE), NBE)).toEqual([
      { readings: ["UPDATE other.t SET x = 'a\\\\' WHERE x = 1"] },
    ]);
    expect(reason(decide("UPDATE other.t SET x = 'a\\' WHERE x = 1", NBE))).toBe('allow');
    // The mode not known: the readings split differently, so the text is not readable with certainty.
    expect(reason(decide(NO_BACKSLASH, {}))).toBe('unparsable');
  });

  it('(c) gbk: a multi-byte character with a 0x5C trail is refused as unparsed, and the DROP is found', () => {
    const { sql } = statementText(gbk, true);
    expect(session().checkSql(sql, 'mysql')).toEqual({ action: 'allow' });
    const statements = guardStatements(sql, analyzeSql(sql, none, KNOWN, [multibyteReader(gbk, 'gbk')]), KNOWN, [multibyteReader(gbk, 'gbk')]);
    expect(statements).toEqual([{ unreadable: expect.stringContaining('multi-byte') }, { readings: ['DROP TABLE payments.cards'] }]);
    expect(reason(decide(sql, KNOWN, [multibyteReader(gbk, 'gbk')]))).toBe('unparsable');
    // A switch of character set in the same text, before such a pair: the splitter cannot follow it.
    const switched = `SET NAMES gbk; ${sql}`;
    expect(reason(decide(switched, KNOWN))).toBe('unparsable');
  });

  it('ANSI_QUOTES: a "…" identifier is given to the grammar as one', () => {
    const ansi: SqlMode = { noBackslashEscapes: false, ansiQuotes: true };
    const sql = 'UPDATE "payments"."cards" SET n = 1 WHERE n = 2';
    expect(guardStatements(sql, analyzeSql(sql, none, ansi), ansi)).toEqual([{ readings: ['UPDATE `payments`.`cards` SET n = 1 WHERE n = 2'] }]);
    expect(reason(decide(sql, ansi))).toBe('write to payments.cards');
  });
});

describe('mysql guardrails read statements as the server does (mariadb client, real MariaDB)', () => {
  let w: MyWorld;
  let generalLog: string;
  beforeAll(async () => {
    w = await startWorld({ guardrails: [{ ...rule, targets: ['db'] }] });
    await w.db.query("CREATE DATABASE payments; CREATE TABLE payments.cards (n VARCHAR(20)); INSERT INTO payments.cards VALUES ('4111'), ('5500')");
    generalLog = await enableGeneralLog(w.db);
  }, 120_000);
  afterAll(async () => {
    await w?.stop();
  });

  const survives = async () => expect((await w.db.query('SELECT COUNT(*) FROM payments.cards'))[0]).toEqual(['2']);
  // No text naming the DROP reached the server (the general log holds all it received, read byte for byte).
  const neverRan = () => expect(fs.readFileSync(generalLog, 'latin1')).not.toContain('DROP TABLE payments.cards');

  /**
   * The client splits text at its delimiter, never at a `;` inside it: with `//`, each attack reaches the
   * gateway as one COM_QUERY (multi-statements are on), whatever the client's own lexing makes of it.
   * --comments keeps the trailing `-- '` the attacks need.
   */
  const run = (input: string | Buffer, args: string[] = []) => w.cli(['--user=db', '--force', '--comments', '--delimiter=//', ...args], { input: input as string });

  it('(a) SELECT 1 --1; DROP TABLE …: refused (1227), the table survives', async () => {
    const r = await run(`${DASHES}\n//\n`);
    expect(r.stderr).toContain('ERROR 1227');
    expect(r.stderr).toContain('vigil guardrail "no-drops" refused this statement (DROP)');
    await survives();
    neverRan();
    const ev = await w.tg.waitForEvent((e) => e.type === 'guardrail.blocked' && String(e.details?.query).startsWith('SELECT 1 --1'));
    expect(ev.details).toMatchObject({ rule: 'no-drops', reason: 'DROP', command: 'COM_QUERY' });
  });

  it("(b) under NO_BACKSLASH_ESCAPES, SELECT 'a\\'; DROP TABLE …: refused, the table survives", async () => {
    const r = await run(`SET SESSION sql_mode = 'NO_BACKSLASH_ESCAPES'//\nSELECT @@sql_mode//\n${NO_BACKSLASH}\n//\n`);
    expect(r.stdout).toContain('NO_BACKSLASH_ESCAPES');
    expect(r.stderr).toContain('ERROR 1227');
    expect(r.stderr).toContain('vigil guardrail "no-drops" refused this statement (DROP)');
    await survives();
    neverRan();
    await w.tg.waitForEvent((e) => e.type === 'guardrail.blocked' && String(e.details?.query).startsWith("SELECT 'a\\'; DROP"));
  });

  it("(c) after SET NAMES gbk, SELECT '<BF 5C>'; DROP TABLE …: refused as unparsed, the table survives", async () => {
    // Bytes, not UTF-8: the client (latin1) sends them as they are; the server reads them in gbk.
    const input = Buffer.concat([Buffer.from('SET NAMES gbk//\n'), gbk, Buffer.from('\n//\n')]);
    const r = await run(input, ['--default-character-set=latin1']);
    expect(r.stderr).toContain('ERROR 1227');
    expect(r.stderr).toContain('vigil guardrail "no-drops" refused this statement (unparsable: a multi-byte character');
    await survives();
    neverRan();
    const ev = await w.tg.waitForEvent((e) => e.type === 'guardrail.unparsed' && String(e.details?.query).includes('DROP TABLE payments.cards'));
    expect(ev.details).toMatchObject({ rule: 'no-drops', command: 'COM_QUERY' });
  });
});
