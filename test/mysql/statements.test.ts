import { describe, it, expect } from 'vitest';
import { PreparedStatements } from '../../proxies/mysql/statements.ts';
import { analyzeSql } from '../../proxies/mysql/sql.ts';
import { COM, TYPE, lenencBytes, u32 } from '../../proxies/mysql/wire.ts';

const secret = (n: string) => /pass/i.test(n);
const exec = (id: number, bound: boolean, values: Buffer[], types: number[], nullBits = 0) =>
  Buffer.concat([Buffer.from([COM.STMT_EXECUTE]), u32(id), Buffer.from([0]), u32(1), Buffer.from([nullBits, bound ? 1 : 0]), ...(bound ? types.map((t) => Buffer.from([t, 0])) : []), ...values]);

describe('prepared statement bookkeeping', () => {
  it('remembers types, masks secret parameters, reports long data, resolves the MariaDB "last statement" id', () => {
    const ps = new PreparedStatements(secret);
    ps.prepared(4, analyzeSql('UPDATE u SET password = ?, note = ? WHERE id = ?', secret), 3);
    const id = Buffer.alloc(4);
    id.writeInt32LE(9);
    const first = ps.execute(exec(4, true, [lenencBytes(Buffer.from('pw1')), id], [TYPE.VAR_STRING, TYPE.BLOB, TYPE.LONG], 0b010), 4, 0);
    expect(first.params).toEqual(['***', null, 9]);
    ps.longData(0xffffffff, 1, Buffer.alloc(300, 0x41));
    ps.longData(4, 1, Buffer.alloc(50, 0x42));
    const second = ps.execute(exec(0xffffffff, false, [lenencBytes(Buffer.from('pw2')), id], []), 0xffffffff, 0);
    expect(second.statementId).toBe(4);
    expect(second.params![0]).toBe('***');
    expect(second.params![1]).toEqual({ hex: '41'.repeat(256), length: 350, long_data: true, truncated: true });
    expect(second.params![2]).toBe(9);
    // Long data is consumed by the execution.
    expect(() => ps.execute(exec(4, false, [lenencBytes(Buffer.from('x')), id], []), 4, 0)).toThrow(/truncated/);
    ps.close(4);
    expect(ps.execute(exec(4, false, [], []), 4, 0)).toEqual({ statementId: 4 });
  });

  it('matches parameter names against the redaction patterns once, at prepare time', () => {
    const names: string[] = [];
    const ps = new PreparedStatements((n) => {
      names.push(n);
      return secret(n);
    });
    ps.prepared(1, analyzeSql('UPDATE u SET password = ? WHERE id = ?', secret), 2);
    const calls = names.length;
    const id = Buffer.alloc(4);
    id.writeInt32LE(3);
    for (let i = 0; i < 3; i++) {
      const ex = ps.execute(exec(1, i === 0, [lenencBytes(Buffer.from(`pw${i}`)), id], [TYPE.VAR_STRING, TYPE.LONG]), 1, 0);
      expect(ex.params).toEqual(['***', 3]);
    }
    expect(names.length).toBe(calls);
    // A statement without secret parameters keeps the decoded values as they are.
    ps.prepared(2, analyzeSql('SELECT c FROM t WHERE id = ?', secret), 1);
    expect(ps.execute(exec(2, true, [id], [TYPE.LONG]), 2, 0).params).toEqual([3]);
  });
});
