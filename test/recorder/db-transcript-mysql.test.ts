import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { startWorld, type MyWorld } from '../mysql/helpers.ts';
import { waitFor } from '../support/tmp.ts';
import { runCliCaptured } from '../support/cli.ts';

const cli = (args: string[]) => runCliCaptured(args);

let w: MyWorld;
beforeAll(async () => {
  w = await startWorld();
}, 120_000);
afterAll(async () => {
  await w?.stop();
});

describe('vigil replay: a MariaDB session through the gateway', () => {
  it('the stock mariadb client session replays as a mysql-style transcript; prepared statements show their parameters', async () => {
    const r = await w.cli(['--user=db', '--force', 'shop'], {
      input: ["CREATE TEMPORARY TABLE t (id INT, v VARCHAR(20));", "INSERT INTO t VALUES (1, 'a'), (2, 'b');", 'SELECT * FROM t\n  ORDER BY id;', 'SELECT * FROM no_such_table;', ''].join('\n'),
    });
    expect(r.stderr).toContain("doesn't exist");
    const marker = await w.tg.waitForEvent((e) => e.type === 'db.query' && String(e.details.query).includes('no_such_table'));
    const text = await waitFor(async () => {
      const x = await cli(['replay', marker.session_id!, '--data', w.tg.dataDir]);
      if (x.code !== 0) throw new Error(x.err);
      return x.out.includes('-- ended') ? x.out : undefined;
    }, 15_000, 'the transcript');
    const lines = text.split('\n');
    expect(lines[0]).toMatch(new RegExp(`^-- mysql session ${marker.session_id}: alice \\(dba,analyst\\) -> db \\(127\\.0\\.0\\.1:\\d+, login native_user, database shop\\) from 127\\.0\\.0\\.1:\\d+$`));
    const at = (needle: string) => lines.findIndex((l) => l.includes(needle));
    const insert = at("> INSERT INTO t VALUES (1, 'a'), (2, 'b');");
    expect(lines[insert]).toMatch(/^\[\d\d:\d\d:\d\d\.\d{6} \+\d+\.\d{3}s\] mysql \[[^\]]*\]> INSERT/);
    expect(lines[insert + 1]).toMatch(/-- Query OK, 2 rows affected \(\d+\.\d{3} ms\)/);
    const select = at('> SELECT * FROM t');
    expect(lines[select + 1]).toMatch(/^ +->   ORDER BY id;$/);
    expect(lines[select + 2]).toMatch(/-- 2 rows in set/);
    // A command without SQL text (the client's COM_QUIT) shows as such, with a plain OK.
    expect(lines[at('> (COM_QUIT)') + 1]).toMatch(/^ +-- OK \(/);
    expect(lines[at('no_such_table') + 1]).toMatch(/-- ERROR 1146 \(42S02\): Table '.*no_such_table' doesn't exist/);

    // mysql2's execute(): a prepared statement with parameters, in --json.
    const c = await w.connect('db');
    await c.execute('SELECT ? + ? AS s, ? AS t', [40, 2, "o'k"]);
    const sid = (await w.tg.waitForEvent((e) => e.type === 'db.query' && e.details.command === 'COM_STMT_EXECUTE')).session_id!;
    await c.end();
    const json = await waitFor(async () => {
      const x = await cli(['replay', sid, '--data', w.tg.dataDir, '--json']);
      return x.out.includes('"ended"') ? x.out : undefined;
    }, 15_000, 'the JSON transcript');
    const entries = json.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(entries[0]).toMatchObject({ kind: 'session', protocol: 'mysql', user: 'alice' });
    const exec = entries.find((e) => e.command === 'COM_STMT_EXECUTE')!;
    expect(exec).toMatchObject({ kind: 'statement', sql: 'SELECT ? + ? AS s, ? AS t', outcome: 'success', rows_returned: 1 });
    expect(exec.params).toEqual([40, 2, "o'k"]);
  });
});
