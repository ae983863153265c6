import { describe, it, expect } from 'vitest';
import { encodePacket } from '../../proxies/mysql/framing.ts';
import { buildOk, parseOk } from '../../proxies/mysql/handshake.ts';
import { buildTrackedOk, parseSessionChanges, stripSessionTrack, SESSION_STATE_CHANGED } from '../../proxies/mysql/session-state.ts';
import { parseTextRow } from '../../proxies/mysql/session-query.ts';
import { CommandTracker, type TrackerSink } from '../../proxies/mysql/tracker.ts';
import { CLIENT, TYPE, lenencBytes, u16, u32 } from '../../proxies/mysql/wire.ts';

const CAPS = CLIENT.PROTOCOL_41 | CLIENT.SECURE_CONNECTION | CLIENT.MULTI_RESULTS | CLIENT.DEPRECATE_EOF | CLIENT.SESSION_TRACK;
const str = (s: string) => lenencBytes(Buffer.from(s));
const colDef = (name: string) =>
  Buffer.concat([str('def'), str('db'), str('t'), str('t'), str(name), str(name), Buffer.from([0x0c]), u16(45), u32(10), Buffer.from([TYPE.LONG]), u16(0), Buffer.from([0, 0, 0])]);

describe('session-state information in OK packets', () => {
  it('reads the schema and system variables the server reports, and nothing when the flag is off', () => {
    const ok = buildTrackedOk({ status: 2, schema: 'other', variables: { SQL_MODE: 'ANSI_QUOTES', autocommit: 'ON' } });
    expect(parseSessionChanges(ok)).toEqual({ schema: 'other', variables: { sql_mode: 'ANSI_QUOTES', autocommit: 'ON' } });
    // MariaDB's bytes for `USE other` (captured): status 0x4002, info '', block of one schema entry.
    const captured = Buffer.from('0000000240000000080106056f74686572', 'hex');
    expect(parseSessionChanges(captured)).toEqual({ schema: 'other' });
    expect(parseSessionChanges(buildOk({ status: 2 }))).toBeUndefined();
    expect(parseSessionChanges(buildTrackedOk({ status: 2, info: 'Rows matched: 1' }))).toBeUndefined();
    // An entry type vigil does not read (transaction state) is skipped by its length.
    const entry = (type: number, data: Buffer) => Buffer.concat([Buffer.from([type]), lenencBytes(data)]);
    const block = Buffer.concat([entry(5, str('T_______')), entry(1, str('db'))]);
    const unknown = Buffer.concat([Buffer.from('0000000240000000', 'hex'), lenencBytes(block)]);
    expect(parseSessionChanges(unknown)).toEqual({ schema: 'db' });
  });

  it('strips the state block for a client without CLIENT_SESSION_TRACK, keeping a non-empty info as written', () => {
    const plain = stripSessionTrack(buildTrackedOk({ status: 2, schema: 'other', affectedRows: 3 }));
    expect(plain).toEqual(buildOk({ status: 2, affectedRows: 3 }));
    expect(parseOk(plain).status & SESSION_STATE_CHANGED).toBe(0);
    const withInfo = stripSessionTrack(buildTrackedOk({ status: 2, info: 'Records: 2', variables: { sql_mode: '' } }));
    expect(withInfo).toEqual(Buffer.concat([buildOk({ status: 2 }), str('Records: 2')]));
    const untouched = buildTrackedOk({ status: 2, info: 'Rows matched: 1' });
    expect(stripSessionTrack(untouched)).toBe(untouched);
  });

  it('reads a text row (NULL as 0xFB)', () => {
    expect(parseTextRow(Buffer.concat([Buffer.from([0xfb]), str('ANSI_QUOTES')]))).toEqual([null, 'ANSI_QUOTES']);
  });
});

describe('CommandTracker.serverStripped, split at every byte', () => {
  // A USE (OK with schema), a SELECT (result set ending in an OK 0xFE with a sql_mode change) whose
  // first row begins with 0x00 (an empty string: not an OK), then a plain OK.
  const responses = [
    [buildTrackedOk({ status: 2, schema: 'other' })],
    [Buffer.from([1]), colDef('a'), str(''), str('x'), buildTrackedOk({ header: 0xfe, status: 2, variables: { sql_mode: 'ANSI_QUOTES' } })],
    [buildOk({ status: 2 })],
  ];
  const wire = Buffer.concat(responses.flatMap((ps) => ps.map((p, i) => encodePacket(i + 1, p))));
  const expected = Buffer.concat(responses.flatMap((ps) => ps.map((p, i) => encodePacket(i + 1, i === ps.length - 1 ? stripSessionTrack(p) : p))));

  it('relays the same bytes minus the state blocks, reports the changes, and puts local replies after', () => {
    for (let cut = 0; cut <= wire.length; cut++) {
      const seen: string[] = [];
      const sink: TrackerSink<string> = {
        response: (_c, res) => seen.push(JSON.stringify(res.results.map((r) => r.changes ?? null))),
        local: (b) => seen.push(`local ${b.toString()}`),
      };
      const t = new CommandTracker<string>(CAPS, sink);
      t.sent('results', 'COM_QUERY', 0, 'use');
      t.sent('results', 'COM_QUERY', 0, 'select');
      expect(t.local(Buffer.from('L'))).toBe(false);
      t.sent('results', 'COM_PING', 0, 'ping');
      const out = Buffer.concat([t.serverStripped(wire.subarray(0, cut)), t.serverStripped(wire.subarray(cut))]);
      expect(out).toEqual(Buffer.concat([expected.subarray(0, expected.length - encodePacket(1, buildOk({ status: 2 })).length), Buffer.from('L'), encodePacket(1, buildOk({ status: 2 }))]));
      // The local reply travels in the returned bytes, after the response it waited for.
      expect(seen).toEqual(['[{"schema":"other"}]', '[{"variables":{"sql_mode":"ANSI_QUOTES"}}]', '[null]']);
    }
  });
});
