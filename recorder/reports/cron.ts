/**
 * Report schedules: a 5-field cron expression evaluated in UTC (minute hour day-of-month month
 * day-of-week; `*`, lists `a,b`, ranges `a-b`, steps `*\/n` and `a-b/n`, month and weekday names; day 0 or 7
 * is Sunday; when both day fields are restricted either may match, as in Vixie cron), the keywords
 * `@hourly`, `@daily`, `@weekly` (Monday 00:00), `@monthly`, or `@every DURATION` (e.g. `@every 6h`,
 * counted from the gateway's start). Pure: no timers here.
 */
import { parseDuration } from '../../src/config/units.ts';

export interface Schedule {
  /** The first run time strictly after `after`, or undefined when the expression never matches. */
  next(after: Date): Date | undefined;
}

export class ScheduleError extends Error {
  readonly code = 'VIGIL_BAD_SCHEDULE';
}

const MONTHS = ['jan', 'feb', 'mar', 'apr', 'may', 'jun', 'jul', 'aug', 'sep', 'oct', 'nov', 'dec'];
const DAYS = ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'];

const KEYWORDS: Record<string, string> = {
  '@hourly': '0 * * * *',
  '@daily': '0 0 * * *',
  '@midnight': '0 0 * * *',
  '@weekly': '0 0 * * 1',
  '@monthly': '0 0 1 * *',
};

interface Field {
  values: Set<number>;
  /** `*` (or `*\/1`): matters for the day-of-month / day-of-week OR rule. */
  any: boolean;
}

function parseField(text: string, min: number, max: number, what: string, names?: string[]): Field {
  const values = new Set<number>();
  const num = (s: string): number => {
    const named = names?.indexOf(s.toLowerCase()) ?? -1;
    const n = named >= 0 ? named + (names === MONTHS ? 1 : 0) : /^\d+$/.test(s) ? Number(s) : NaN;
    if (!Number.isInteger(n) || n < min || n > max) throw new ScheduleError(`${what}: ${JSON.stringify(s)} is not a value from ${min} to ${max}`);
    return n;
  };
  for (const part of text.split(',')) {
    const m = /^([^/]+)(?:\/(\d+))?$/.exec(part);
    if (!m) throw new ScheduleError(`${what}: cannot read ${JSON.stringify(part)}`);
    const step = m[2] === undefined ? 1 : Number(m[2]);
    if (!(step >= 1)) throw new ScheduleError(`${what}: step must be at least 1`);
    let lo: number;
    let hi: number;
    if (m[1] === '*') [lo, hi] = [min, max];
    else if (m[1].includes('-')) {
      const [a, b] = m[1].split('-');
      [lo, hi] = [num(a), num(b)];
      if (lo > hi) throw new ScheduleError(`${what}: range ${m[1]} runs backwards`);
    } else {
      lo = num(m[1]);
      hi = m[2] === undefined ? lo : max;
    }
    for (let v = lo; v <= hi; v += step) values.add(v);
  }
  return { values, any: text === '*' || text === '*/1' };
}

class CronSchedule implements Schedule {
  constructor(
    private readonly minute: Field,
    private readonly hour: Field,
    private readonly dom: Field,
    private readonly month: Field,
    private readonly dow: Field,
  ) {}

  private dayMatches(d: Date): boolean {
    const domOk = this.dom.values.has(d.getUTCDate());
    const dowOk = this.dow.values.has(d.getUTCDay());
    if (this.dom.any) return dowOk;
    if (this.dow.any) return domOk;
    return domOk || dowOk;
  }

  next(after: Date): Date | undefined {
    const t = new Date(Math.floor(after.getTime() / 60_000) * 60_000 + 60_000);
    // Eight years covers every satisfiable expression (29 February can be 8 years away, across 2100);
    // an expression that matches nothing gives up here.
    const limit = after.getTime() + 8 * 366 * 86_400_000;
    while (t.getTime() <= limit) {
      if (!this.month.values.has(t.getUTCMonth() + 1)) {
        t.setUTCMonth(t.getUTCMonth() + 1, 1);
        t.setUTCHours(0, 0, 0, 0);
      } else if (!this.dayMatches(t)) {
        t.setUTCDate(t.getUTCDate() + 1);
        t.setUTCHours(0, 0, 0, 0);
      } else if (!this.hour.values.has(t.getUTCHours())) {
        t.setUTCHours(t.getUTCHours() + 1, 0, 0, 0);
      } else if (!this.minute.values.has(t.getUTCMinutes())) {
        t.setUTCMinutes(t.getUTCMinutes() + 1, 0, 0);
      } else return t;
    }
    return undefined;
  }
}

class EverySchedule implements Schedule {
  constructor(private readonly ms: number) {}
  next(after: Date): Date {
    return new Date(after.getTime() + this.ms);
  }
}

/** Parse a schedule; throws ScheduleError with what is wrong. */
export function parseSchedule(text: string): Schedule {
  const t = text.trim();
  const every = /^@every\s+(\S+)$/i.exec(t);
  if (every) {
    const ms = parseDuration(every[1]);
    if (ms === undefined || ms < 1000) throw new ScheduleError(`@every: expected a duration of at least 1s, got ${JSON.stringify(every[1])}`);
    return new EverySchedule(ms);
  }
  const expr = KEYWORDS[t.toLowerCase()] ?? t;
  if (expr.startsWith('@')) throw new ScheduleError(`unknown keyword ${JSON.stringify(t)} (have ${Object.keys(KEYWORDS).join(', ')}, @every DURATION)`);
  const f = expr.split(/\s+/);
  if (f.length !== 5) throw new ScheduleError(`expected 5 fields (minute hour day-of-month month day-of-week), got ${f.length}`);
  const dow = parseField(f[4], 0, 7, 'day-of-week', DAYS);
  if (dow.values.delete(7)) dow.values.add(0);
  const cron = new CronSchedule(parseField(f[0], 0, 59, 'minute'), parseField(f[1], 0, 23, 'hour'), parseField(f[2], 1, 31, 'day-of-month'), parseField(f[3], 1, 12, 'month', MONTHS), dow);
  if (cron.next(new Date(Date.UTC(2000, 0, 1))) === undefined) throw new ScheduleError(`${JSON.stringify(t)} never matches a date`);
  return cron;
}
