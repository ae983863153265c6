import { useEffect, useState } from 'preact/hooks';
import { call, type AccessRequest, type Me } from './api.ts';
import { ErrorLine, when } from './ui.tsx';

/** Pending requests (approve or deny with a comment, for the roles one approves) and the history. */
export function AccessPage({ me }: { me: Me }) {
  const [list, setList] = useState<AccessRequest[]>();
  const [error, setError] = useState<string>();
  const [notice, setNotice] = useState<string>();
  const load = () => call<{ requests: AccessRequest[] }>('GET', '/access/requests').then((r) => setList(r.requests), (e) => setError((e as Error).message));
  useEffect(() => void load(), []);

  const decide = async (r: AccessRequest, verb: 'approve' | 'deny', comment: string) => {
    setError(undefined);
    setNotice(undefined);
    try {
      const body = verb === 'approve' ? { comment: comment || undefined } : { reason: comment };
      const res = await call<{ request: AccessRequest }>('POST', `/access/requests/${encodeURIComponent(r.id)}/${verb}`, body);
      setNotice(`Request ${r.id}: ${res.request.state}.`);
      await load();
    } catch (e) {
      setError((e as Error).message);
    }
  };
  if (!list) return error ? <ErrorLine error={error} /> : <p aria-busy="true">Loading…</p>;
  const pending = list.filter((r) => r.state === 'pending');
  const history = list.filter((r) => r.state !== 'pending');
  return (
    <section aria-labelledby="access-h">
      <h1 id="access-h">Access requests</h1>
      <ErrorLine error={error} />
      {notice ? (
        <p class="notice" role="status">
          {notice}
        </p>
      ) : null}
      <h2>Pending</h2>
      {pending.length === 0 ? <p>No pending requests.</p> : null}
      <ul class="requests">
        {pending.map((r) => (
          <PendingRequest key={r.id} r={r} mayDecide={me.can.decide_for.includes(r.role) || me.can.admin} onDecide={decide} />
        ))}
      </ul>
      <h2>History</h2>
      <div class="scroll">
        <table>
          <thead>
            <tr>
              <th scope="col">Requested</th>
              <th scope="col">User</th>
              <th scope="col">Role</th>
              <th scope="col">Reason</th>
              <th scope="col">State</th>
              <th scope="col">Decided by</th>
              <th scope="col">Comment</th>
            </tr>
          </thead>
          <tbody>
            {history.map((r) => (
              <tr key={r.id}>
                <td>{when(r.createdAt)}</td>
                <td>{r.user}</td>
                <td>{r.role}</td>
                <td>{r.reason}</td>
                <td>{r.state}</td>
                <td>{r.decidedBy ?? r.approvals.map((a) => a.by).join(', ')}</td>
                <td>{r.decisionReason ?? r.approvals.map((a) => a.comment).filter(Boolean).join('; ')}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    </section>
  );
}

function PendingRequest({ r, mayDecide, onDecide }: { r: AccessRequest; mayDecide: boolean; onDecide: (r: AccessRequest, v: 'approve' | 'deny', c: string) => Promise<void> }) {
  const [comment, setComment] = useState('');
  const [busy, setBusy] = useState(false);
  const go = async (v: 'approve' | 'deny') => {
    setBusy(true);
    await onDecide(r, v, comment);
    setBusy(false);
  };
  const cid = `comment-${r.id}`;
  return (
    <li class="request" aria-label={`Request ${r.id} by ${r.user}`}>
      <p>
        <strong>{r.user}</strong> asks for <strong>{r.role}</strong>
        {r.targets.length ? ` on ${r.targets.join(', ')}` : ''} for {Math.round(r.ttlMs / 60000)} min: “{r.reason}” ({when(r.createdAt)}, approvable until {when(r.requestExpiresAt)})
      </p>
      {mayDecide ? (
        <div class="decide">
          <label for={cid}>Comment</label>
          <textarea id={cid} rows={2} value={comment} onInput={(e) => setComment(e.currentTarget.value)} />
          <button type="button" onClick={() => go('approve')} disabled={busy}>
            Approve
          </button>
          <button type="button" class="danger" onClick={() => go('deny')} disabled={busy}>
            Deny
          </button>
        </div>
      ) : (
        <p class="muted">You do not approve requests for this role.</p>
      )}
    </li>
  );
}
