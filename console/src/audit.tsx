import { useEffect, useState } from 'preact/hooks';
import { call } from './api.ts';
import { ErrorLine } from './ui.tsx';

interface Status {
  head: { seq: number; key_id: string; time?: string } | null;
  chain_seq: number;
  verify: { at: string; status: string; ok: boolean; records: number; segments: number; checkpoints: number; last_seq: number; checkpointed_seq: number; tail_records: number; first_bad?: { problem: string; seq: number } };
  index?: { indexedSeq: number; chainSeq: number; lag: number };
}

/** The chain: last signed head, and the result of verifying the log with the public key. */
export function AuditPage() {
  const [s, setS] = useState<Status>();
  const [error, setError] = useState<string>();
  const load = (now = false) => call<Status>('GET', `/audit/status${now ? '?verify=now' : ''}`).then(setS, (e) => setError((e as Error).message));
  useEffect(() => void load(), []);
  if (error) return <ErrorLine error={error} />;
  if (!s) return <p aria-busy="true">Verifying the audit log…</p>;
  const v = s.verify;
  return (
    <section aria-labelledby="audit-h">
      <h1 id="audit-h">Audit chain</h1>
      <p class={v.ok ? 'ok' : 'error'} role="status">
        Verification: <strong>{v.status}</strong> — {v.records} records in {v.segments} segment(s), {v.checkpoints} signed checkpoint(s), signed up to seq {v.checkpointed_seq}
        {v.tail_records ? `, ${v.tail_records} record(s) after it` : ''} (checked {v.at})
      </p>
      {v.first_bad ? <p class="error">First problem: {v.first_bad.problem} at seq {v.first_bad.seq}</p> : null}
      <dl class="facts">
        <dt>Last signed head</dt>
        <dd>{s.head ? `seq ${s.head.seq}, key ${s.head.key_id}${s.head.time ? `, written ${s.head.time}` : ''}` : 'none yet'}</dd>
        <dt>Chain head</dt>
        <dd>seq {s.chain_seq}</dd>
        {s.index ? (
          <>
            <dt>Search index</dt>
            <dd>
              seq {s.index.indexedSeq} ({s.index.lag} behind)
            </dd>
          </>
        ) : null}
      </dl>
      <button type="button" onClick={() => load(true)}>
        Verify again
      </button>
    </section>
  );
}
