import { encodePacket, PacketFramer, PacketScanner, type ScanSink } from '../../proxies/mysql/framing.ts';
import { ProtocolError } from '../../src/errors.ts';
import { check, chunksAt, splitPoints, type FuzzTarget } from '../engine/target.ts';

function frame(chunks: Buffer[]): { packets: string[]; error?: string } {
  const f = new PacketFramer(1 << 16);
  const packets: string[] = [];
  try {
    for (const c of chunks) f.push(c, (p) => packets.push(`${p.seq}/${p.lastSeq}:${p.payload.toString('hex')}`));
  } catch (err) {
    if (!(err instanceof ProtocolError)) throw err;
    return { packets, error: err.code };
  }
  return { packets };
}

function scan(chunks: Buffer[], wantMask: number): { events: string[]; error?: string } {
  const s = new PacketScanner(1 << 16);
  const events: string[] = [];
  let counting = false;
  const sink: ScanSink = {
    // The ScanSink contract: while counting rows, a packet that is not EOF/OK/ERR (0xFE/0xFF) is a row
    // the consumer only counts (a row split across chunks is offered one by one and must be skipped).
    wants: (head) => (counting ? head === 0xfe || head === 0xff : ((head + 1) & wantMask) !== 0),
    packet: (payload, lastSeq) => {
      events.push(`p${lastSeq}:${payload.toString('hex')}`);
      counting = payload[0] === 0x01;
    },
    skipped: (head, length, lastSeq) => events.push(`s${head}:${length}:${lastSeq}`),
    countingRows: () => counting,
    rows: (count, lastSeq) => {
      for (let i = 0; i < count; i++) events.push(`r`);
      events.push(`r@${lastSeq}`);
    },
  };
  try {
    for (const c of chunks) s.push(c, sink);
  } catch (err) {
    if (!(err instanceof ProtocolError)) throw err;
    return { events, error: err.code };
  }
  return { events };
}

/** Rows counted in a batch and rows counted one by one are the same rows: compare without the batch marks. */
const rowsOnly = (e: string[]): string => e.filter((x) => !x.startsWith('r@')).map((x) => (x.startsWith('s') && !x.startsWith('s254') && !x.startsWith('s255') ? 'r' : x)).join(',');

/**
 * MySQL wire packets from either side: the client framer (PacketFramer) and the server-side scanner
 * (PacketScanner) cut the same packets whatever the chunking; re-encoding what was framed gives the
 * bytes back.
 */
export const target: FuzzTarget = {
  name: 'mysql-framing',
  covers: ['proxies/mysql/framing'],
  maxLen: 4096,
  dictionary: [Buffer.from([1, 0, 0, 0]), Buffer.from([0xff, 0xff, 0xff]), Buffer.from([5, 0, 0, 1, 0xfe]), Buffer.from([7, 0, 0, 2, 0])],
  run(data) {
    const mask = data.length > 0 ? data[0] : 0;
    const body = data.subarray(1);
    const whole = frame([body]);
    const scanned = scan([body], mask);
    const points = splitPoints(body.length, 8);
    for (const p of points) {
      const chunks = chunksAt(body, [p, Math.floor(p / 3)]);
      check(JSON.stringify(frame(chunks)) === JSON.stringify(whole), `PacketFramer differs when split at ${p}`);
      const s = scan(chunks, mask);
      check(s.error === scanned.error && rowsOnly(s.events) === rowsOnly(scanned.events), `PacketScanner differs when split at ${p}`);
    }
    if (!whole.error) {
      const again = Buffer.concat(whole.packets.map((p) => encodePacket(Number(p.split('/')[0]), Buffer.from(p.split(':')[1], 'hex'))));
      check(body.subarray(0, again.length).equals(again), 'encodePacket(frame(x)) differs from x');
    }
  },
};
