import fs from 'node:fs';
import type { Logger } from 'pino';
import type { SignedHead } from './record.ts';
import { writeFileAtomic } from './durable.ts';

/**
 * A witness keeps the newest signed head of the log somewhere the gateway's host cannot rewrite: a file
 * (on storage mounted from elsewhere) or an HTTP endpoint. The writer hands it every signed head once
 * durable; `vigil audit verify --witness` then checks the log still reaches the witness's newest head, which
 * catches a log cut back or rolled back together with its head.json. A consistent successor of a head is
 * the same chain grown by records: its first `seq` records hash exactly as before (the hash chain is its own
 * consistency proof, RFC 6962 / C2SP tlog-checkpoint in spirit); a witness endpoint may check that a new
 * head's seq is not below the one it holds.
 */
export interface WitnessConfig {
  /** File that always holds the newest head (one JSON line, replaced atomically). */
  file?: string;
  /** URL: each head is POSTed as JSON; GET returns the newest one. */
  url?: string;
  /** Per-publication timeout (ms). */
  timeout: number;
}

export interface WitnessPublisher {
  /** Hand over a head; resolves once published or given up on (never rejects). */
  publish(head: SignedHead): Promise<void>;
}

export function witnessPublisher(cfg: WitnessConfig, log: Logger): WitnessPublisher {
  let failing = false;
  const report = (where: string, e: unknown) => {
    // Once per outage of the witness, not per head.
    if (!failing) log.warn({ err: (e as Error).message, witness: where }, 'audit witness: could not publish the signed head (retried with the next one)');
    failing = true;
  };
  return {
    async publish(head) {
      const line = JSON.stringify({ seq: head.seq, head: head.head, sig: head.sig, key_id: head.key_id });
      let ok = true;
      if (cfg.file) {
        try {
          await writeFileAtomic(cfg.file, line + '\n');
        } catch (e) {
          ok = false;
          report(cfg.file, e);
        }
      }
      if (cfg.url) {
        try {
          const res = await fetch(cfg.url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: line, signal: AbortSignal.timeout(cfg.timeout) });
          if (!res.ok) throw new Error(`HTTP ${res.status}`);
          await res.body?.cancel();
        } catch (e) {
          ok = false;
          report(cfg.url, e);
        }
      }
      if (ok && failing) {
        failing = false;
        log.info({}, 'audit witness: publishing again');
      }
    },
  };
}

/** Signed heads held by a witness: a file (one JSON head per line) or an http(s) URL answering GET. */
export async function readWitness(source: string, timeoutMs = 10_000): Promise<{ head: SignedHead; source: string }[]> {
  let text: string;
  if (/^https?:\/\//.test(source)) {
    const res = await fetch(source, { signal: AbortSignal.timeout(timeoutMs) });
    if (!res.ok) throw new Error(`witness ${source} answered HTTP ${res.status}`);
    text = await res.text();
  } else {
    text = fs.readFileSync(source, 'utf8');
  }
  const lines = text.split('\n').map((l) => l.trim()).filter(Boolean);
  if (lines.length === 0) throw new Error(`witness ${source} holds no signed head`);
  return lines.map((line, i) => {
    try {
      return { head: JSON.parse(line) as SignedHead, source: lines.length > 1 ? `${source}:${i + 1}` : source };
    } catch {
      throw new Error(`witness ${source} line ${i + 1} is not a signed head (JSON from \`vigil audit head\`)`);
    }
  });
}
