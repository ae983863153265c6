import { describe, it, expect } from 'vitest';
import { EVENT_CATALOG, isEventType, type EventType } from '../../src/events/catalog.ts';
import { createEvent, missingRequiredFields, SYSTEM_ACTOR, LOCAL_SOURCE, formatTime } from '../../src/events/envelope.ts';

describe('event catalog', () => {
  const types = Object.keys(EVENT_CATALOG) as EventType[];

  it('documents every type with a dotted name and a sentence', () => {
    expect(types.length).toBeGreaterThan(20);
    for (const t of types) {
      expect(t, t).toMatch(/^[a-z]+(\.[a-z_]+)+$/);
      const d = EVENT_CATALOG[t].description;
      expect(d.length, `${t} needs a description`).toBeGreaterThan(15);
      expect(d.endsWith('.'), `${t} description should be a sentence`).toBe(true);
    }
    expect(isEventType('cert.issued')).toBe(true);
    expect(isEventType('toString')).toBe(false);
  });

  it('every type carries the PCI DSS 10.2.2 fields once built through the envelope', () => {
    for (const type of types) {
      const e = createEvent({ type, outcome: 'success', actor: { ...SYSTEM_ACTOR, roles: [...SYSTEM_ACTOR.roles] }, source: LOCAL_SOURCE, target: { name: 'x', protocol: 'vigil' } });
      expect(missingRequiredFields(e), type).toEqual([]);
    }
  });

  it('flags events that lack user, origin, resource or outcome', () => {
    const e = createEvent({ type: 'auth.failure', outcome: 'failure', actor: { user: '', roles: [] }, source: { ip: '' }, target: { name: '', protocol: '' } });
    expect(missingRequiredFields(e)).toEqual(['actor.user', 'source.ip', 'target']);
    expect(missingRequiredFields({ ...e, outcome: 'maybe' as never, actor: { user: 'a', roles: [] } })).toContain('outcome');
    // `unknown` is a real outcome: an action that reached the backend whose result was never seen.
    expect(missingRequiredFields({ ...e, outcome: 'unknown', actor: { user: 'a', roles: [] } })).not.toContain('outcome');
  });

  it('builds the envelope from the parts as given (no copies), with session_id only when set', () => {
    const actor = Object.freeze({ user: 'a', roles: ['r'], cert_serial: '0x1' });
    const source = Object.freeze({ via: 'gateway', ip: '1.2.3.4', port: 5 });
    const target = Object.freeze({ protocol: 'postgres', name: 'db', login: 'x', host: 'h', database: 'd' });
    const e = createEvent({ type: 'db.query', outcome: 'success', actor, source, target, session_id: 'S', details: { b: 1 } });
    expect(Object.keys(e).sort()).toEqual(['actor', 'details', 'id', 'outcome', 'session_id', 'source', 'target', 'time', 'type']);
    // The same objects: the audit encoder reuses the JSON of a session's frozen parts.
    expect(e.actor).toBe(actor);
    expect(e.source).toBe(source);
    expect(e.target).toBe(target);
    const noSession = createEvent({ type: 'auth.success', outcome: 'success', actor: { user: 'a', roles: [] }, source: { ip: 'local' }, target: { name: 't', protocol: 'ssh' } });
    expect('session_id' in noSession).toBe(false);
  });

  it('stamps RFC 3339 UTC with microseconds and ULIDs that sort in creation order', () => {
    const a = createEvent({ type: 'auth.success', outcome: 'success', actor: { user: 'a', roles: [] }, source: { ip: '1.2.3.4', port: 5 }, target: { name: 't', protocol: 'ssh' } });
    const b = createEvent({ type: 'auth.success', outcome: 'success', actor: { user: 'a', roles: [] }, source: { ip: '1.2.3.4', port: 5 }, target: { name: 't', protocol: 'ssh' } });
    expect(a.time).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/);
    expect(a.id < b.id).toBe(true);
    expect(a.time <= b.time).toBe(true);
    expect(Math.abs(Date.parse(a.time) - Date.now())).toBeLessThan(1000);
    expect(formatTime(new Date('2026-01-02T03:04:05.678Z'), 9)).toBe('2026-01-02T03:04:05.678009Z');
    // The per-millisecond prefix is cached: a different millisecond must not reuse it.
    expect(formatTime(new Date('2026-01-02T03:04:05.678Z'), 999)).toBe('2026-01-02T03:04:05.678999Z');
    expect(formatTime(new Date('2026-01-02T03:04:05.679Z'))).toBe('2026-01-02T03:04:05.679000Z');
    expect(formatTime(new Date('2031-12-31T23:59:59.999Z'), 1)).toBe('2031-12-31T23:59:59.999001Z');
  });
});
