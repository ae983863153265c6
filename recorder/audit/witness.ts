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

/**
 * A witness URL as fetch can send it. The endpoint takes writes, so it is usually protected, and the URL is
 * the only place its credential can be: `user:password@` goes out as an `Authorization: Basic` header
 * (fetch refuses a URL holding credentials, and its error quotes the URL). `shown` is what logs and
 * messages name instead of the URL: its origin, never the path or query (a token may be there).
 */
function witnessRequest(url: string): { url: string; headers: Record<string, string>; shown: string } {
  const u = new URL(url);
  const shown = u.origin;
  if (!u.username && !u.password) return { url, headers: {}, shown };
  const decode = (x: string) => {
    try {
      return decodeURIComponent(x);
    } catch {
      return x;
    }
  };
  const basic = Buffer.from(`${decode(u.username)}:${decode(u.password)}`).toString('base64');
  u.username = '';
  u.password = '';
  return { url: u.toString(), headers: { authorization: `Basic ${basic}` }, shown };
}

/** An error text that may quote the witness URL (with or without its credentials), without it. */
function scrubbed(text: string, ...urls: string[]): string {
  for (const u of urls) text = text.split(u).join('<witness url>');
  return text.replace(/\b([a-z][a-z0-9+.-]*:\/\/)[^\s/?#@]*@/gi, '$1***@');
}

export function witnessPublisher(cfg: WitnessConfig, log: Logger): WitnessPublisher {
  let failing = false;
  const report = (where: string, e: unknown) => {
    // Once per outage of the witness, not per head. A fetch failure says why in its cause.
    const err = e as Error;
    const why = (err.cause as Error | undefined)?.message ?? err.message;
    if (!failing) log.warn({ err: cfg.url ? scrubbed(why, cfg.url, witnessRequest(cfg.url).url) : why, witness: where }, 'audit witness: could not publish the signed head (retried with the next one)');
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
        const req = witnessRequest(cfg.url);
        try {
          const res = await fetch(req.url, { method: 'POST', headers: { 'content-type': 'application/json', ...req.headers }, body: line, signal: AbortSignal.timeout(cfg.timeout) });
          if (!res.ok) throw new Error(`HTTP ${res.status}`);
          await res.body?.cancel();
        } catch (e) {
          ok = false;
          report(req.shown, e);
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
    const req = witnessRequest(source);
    // Named without its credentials in what verify prints.
    source = req.url;
    const res = await fetch(req.url, { headers: req.headers, signal: AbortSignal.timeout(timeoutMs) });
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
