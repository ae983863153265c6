import { render } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { call, setCsrf, ApiFailure, type Me } from './api.ts';
import { SessionsPage, SessionPage } from './sessions.tsx';
import { EventsPage } from './events.tsx';
import { AccessPage } from './access.tsx';
import { AuditPage } from './audit.tsx';
import { LivePage } from './live.tsx';
import { ReportPage } from './report.tsx';
import { ErrorLine } from './ui.tsx';
import './style.css';

/** Hash routes: #/sessions, #/sessions/ID, #/sessions/ID/live, #/events, #/access, #/audit, #/reports. */
function useRoute(): string[] {
  const parse = () => (location.hash.replace(/^#\/?/, '') || '').split('/').filter(Boolean).map(decodeURIComponent);
  const [route, setRoute] = useState(parse);
  useEffect(() => {
    const on = () => setRoute(parse());
    addEventListener('hashchange', on);
    return () => removeEventListener('hashchange', on);
  }, []);
  return route;
}

function SignIn({ onSignedIn }: { onSignedIn: (me: Me) => void }) {
  const [error, setError] = useState<string>();
  const [busy, setBusy] = useState(false);
  const signIn = async () => {
    setBusy(true);
    setError(undefined);
    try {
      onSignedIn(await call<Me>('POST', '/signin'));
    } catch (e) {
      setError((e as Error).message);
    } finally {
      setBusy(false);
    }
  };
  const [oidc, setOidc] = useState<{ start: string; provider: string } | null>(null);
  useEffect(() => {
    call<{ oidc: { start: string; provider: string } | null }>('GET', '/signin/methods')
      .then((m) => setOidc(m.oidc))
      .catch(() => setOidc(null));
  }, []);
  return (
    <main class="signin">
      <h1>vigil console</h1>
      <p>Sign in with your vigil client certificate (the browser presents it when it connects).</p>
      <button type="button" onClick={signIn} disabled={busy}>
        Sign in with client certificate
      </button>
      {oidc && (
        <p>
          <a class="button" id="oidc-signin" href={oidc.start}>
            Sign in with {oidc.provider}
          </a>
        </p>
      )}
      <ErrorLine error={error} />
    </main>
  );
}

function App() {
  const [me, setMe] = useState<Me | null | undefined>(undefined);
  const route = useRoute();
  useEffect(() => {
    call<Me>('GET', '/me')
      .then(signedIn)
      .catch((e) => {
        if (e instanceof ApiFailure && e.status === 401) setMe(null);
        else setMe(null);
      });
  }, []);
  function signedIn(m: Me) {
    setCsrf(m.csrf);
    setMe(m);
  }
  if (me === undefined) return <p aria-busy="true">Loading…</p>;
  if (me === null) return <SignIn onSignedIn={signedIn} />;
  const signOut = async () => {
    await call('POST', '/signout').catch(() => {});
    setMe(null);
  };
  const page = route[0] ?? (me.can.read ? 'sessions' : 'access');
  const nav: [string, string, boolean][] = [
    ['sessions', 'Sessions', me.can.read],
    ['events', 'Events', me.can.read],
    ['access', 'Access requests', true],
    ['audit', 'Audit chain', me.can.read],
    ['reports', 'Access review', me.can.read],
  ];
  return (
    <>
      <header>
        <a class="brand" href="#/">
          vigil
        </a>
        <nav aria-label="Main">
          {nav
            .filter(([, , ok]) => ok)
            .map(([id, label]) => (
              <a href={`#/${id}`} aria-current={page === id ? 'page' : undefined}>
                {label}
              </a>
            ))}
        </nav>
        <span class="who">
          {me.user} ({me.roles.join(', ') || 'no roles'})
        </span>
        <button type="button" class="secondary" onClick={signOut}>
          Sign out
        </button>
      </header>
      <main>
        {page === 'sessions' && route[1] && route[2] === 'live' ? <LivePage id={route[1]} me={me} /> : null}
        {page === 'sessions' && route[1] && !route[2] ? <SessionPage id={route[1]} /> : null}
        {page === 'sessions' && !route[1] ? <SessionsPage /> : null}
        {page === 'events' ? <EventsPage /> : null}
        {page === 'access' ? <AccessPage me={me} /> : null}
        {page === 'audit' ? <AuditPage /> : null}
        {page === 'reports' ? <ReportPage /> : null}
      </main>
    </>
  );
}

render(<App />, document.getElementById('app')!);
