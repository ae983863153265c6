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
  });

  it('stamps RFC 3339 UTC with microseconds and ULIDs that sort in creation order', () => {
    const a = createEvent({ type: 'auth.success', outcome: 'success', actor: { user: 'a', roles: [] }, source: { ip: '1.2.3.4', port: 5 }, target: { name: 't', protocol: 'ssh' } });
    const b = createEvent({ type: 'auth.success', outcome: 'success', actor: { user: 'a', roles: [] }, source: { ip: '1.2.3.4', port: 5 }, target: { name: 't', protocol: 'ssh' } });
    expect(a.time).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/);
    expect(a.id < b.id).toBe(true);
    expect(a.time <= b.time).toBe(true);
    expect(Math.abs(Date.parse(a.time) - Date.now())).toBeLessThan(1000);
    expect(formatTime(new Date('2026-01-02T03:04:05.678Z'), 9)).toBe('2026-01-02T03:04:05.678009Z');
  });
});
