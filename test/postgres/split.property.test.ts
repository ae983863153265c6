import { describe, it, expect } from 'vitest';
import { splitQuery } from '../../proxies/postgres/sql.ts';
import { prng } from '../support/fuzz.ts';

/**
 * Property: for random simple-query texts built from every quoting style PostgreSQL's lexer knows
 * (valid in the mode at hand, with semicolons, quotes, backslashes and comment markers inside literals
 * and comments), the splitter returns exactly the statements the text was built from.
 *
 * The invariant, precisely: a text is built as  L s1 S1 s2 S2 … sk T  where each si is a statement that
 * starts and ends with a token, each Si is a separator holding at least one `;` (with whitespace and
 * comments, which may hold `;` too), and L and T are whitespace, comments and `;`. Then
 * splitQuery(text, mode) = { statements: [s1 … sk], unsplit: false }: nothing is cut from a statement,
 * nothing else becomes one (nothing invented), in order. (A text with no `;` at all is returned whole,
 * trimmed.) With the mode unknown, the result is either that, or the whole text marked unsplit.
 * Every generated case is replayable from its seed.
 */

type Rand = () => number;
const pick = <T>(r: Rand, xs: readonly T[]): T => xs[Math.floor(r() * xs.length)];
const many = (r: Rand, min: number, max: number, f: () => string) => Array.from({ length: min + Math.floor(r() * (max - min + 1)) }, f).join('');

const TRICKY = [';', "''", '"', '$', '--', '/*', '*/', ' ', '\n', 'x', 'é', '1'];

function plainBody(r: Rand, scs: boolean): string {
  // With standard_conforming_strings on, a backslash is an ordinary character; off, it escapes the next.
  return many(r, 0, 6, () => pick(r, scs ? [...TRICKY, '\\'] : [...TRICKY, "\\'", '\\\\', '\\;', '\\n']));
}
const escapedBody = (r: Rand) => many(r, 0, 6, () => pick(r, [...TRICKY, "\\'", '\\\\', '\\;', '\\u00e9', '\\x41', '\\047']));
const bitsBody = (r: Rand) => many(r, 0, 4, () => pick(r, ['0', '1', 'f', '\\', ';']));

function dollarQuote(r: Rand): string {
  for (;;) {
    const tag = `$${pick(r, ['', 'a', '_x1', 'é', 'Tag'])}$`;
    const body = many(r, 0, 6, () => pick(r, [...TRICKY, '\\', "'", '$b$', '$1']));
    if ((body + tag).indexOf(tag) === body.length) return tag + body + tag;
  }
}

/**
 * A token and, for quoted ones, the cut positions [from, to] (relative) at which the text would end
 * inside the literal: an unterminated literal, which the server refuses.
 */
interface Piece {
  text: string;
  cut?: [number, number];
}

/** Cut positions of a literal `open body close`, when no doubled quote could end it early. */
function quoted(open: string, body: string, close: string, doubled: string): Piece {
  const text = open + body + close;
  return body.includes(doubled) ? { text } : { text, cut: [open.length, text.length - 1] };
}

function token(r: Rand, scs: boolean): Piece {
  const t = tokenText(r, scs);
  if (typeof t !== 'string') return t;
  return { text: t };
}

/** One token (or a few that belong together), valid in the mode. */
function tokenText(r: Rand, scs: boolean): string | Piece {
  switch (Math.floor(r() * 13)) {
    case 0:
      return pick(r, ['SELECT', 'a', 'x$y', '_t', 'é', 'N', 'u']);
    case 1:
      return pick(r, ['1', '2.5', '3e4', '.5']);
    case 2:
      // Parentheses come balanced (see `statement`): a `;` inside them does not end a statement.
      return pick(r, ['+', '()', ',', '::', '=', '*', '/', '-', '\\']);
    case 3:
      return quoted("'", plainBody(r, scs), "'", "''");
    case 4:
      return quoted(`${pick(r, ['E', 'e'])}'`, escapedBody(r), "'", "''");
    case 5:
      // A literal continued on the next line keeps its state: the second part of an E string escapes.
      return `E'${escapedBody(r)}'${pick(r, ['\n', ' \n ', ' -- c;\n', '\n-- c\n  '])}'${escapedBody(r)}'`;
    case 6:
      return `'${plainBody(r, scs)}'\n'${plainBody(r, scs)}'`;
    case 7:
      return `${pick(r, ['B', 'x', 'X', 'b'])}'${bitsBody(r)}'`;
    case 8:
      // The server refuses U&'' with the mode off, so it is only generated with it on.
      return scs ? `U&'${many(r, 0, 4, () => pick(r, [';', 'a', '\\0041', "''", '--']))}'` : `N'${plainBody(r, scs)}'`;
    case 9:
    case 10: {
      const prefix = r() < 0.5 ? '' : '1';
      const q = dollarQuote(r);
      const tagLength = q.indexOf('$', 1) + 1;
      return { text: prefix + q, cut: [prefix.length + tagLength, prefix.length + q.length - 1] };
    }
    case 11:
      return quoted('"', many(r, 1, 4, () => pick(r, [';', "'", '\\', '""', 'x', '--', '$a$'])), '"', '""');
    default:
      return pick(r, ['$1', '$23']);
  }
}

const INNER = [' ', '\n', '\t', ' /* c; */ ', ' /* a /* ; */ b */ ', ' -- c;\n', ' -- c;\r', '\r\n'];

function statement(r: Rand, scs: boolean): { text: string; cuts: [number, number][] } {
  let s = '';
  const cuts: [number, number][] = [];
  const n = 1 + Math.floor(r() * 5);
  for (let i = 0; i < n; i++) {
    const next = token(r, scs);
    // A newline between two quoted literals would join them into one (tested in `token`).
    if (i > 0) s += s.endsWith("'") && /^[a-zA-Z&]*'/.test(next.text) ? ' ' : pick(r, INNER);
    if (next.cut) cuts.push([s.length + next.cut[0], s.length + next.cut[1]]);
    s += next.text;
  }
  // Sometimes the tokens are in parentheses (balanced, as the server's grammar requires).
  if (r() < 0.2) return { text: `(${s})`, cuts: cuts.map(([a, b]) => [a + 1, b + 1] as [number, number]) };
  return { text: s, cuts };
}

const SEPARATOR = [';', ' ; ', ';\n', '; -- c;\n', '; /* ; */ ', ';;', ' ;\r\n; '];
const EDGE = ['', ' ', '\n', '/* c; */ ', '-- c;\n', ';', ' ; '];

function build(r: Rand, scs: boolean): { text: string; statements: string[]; cuts: [number, number][] } {
  const built = Array.from({ length: 1 + Math.floor(r() * 4) }, () => statement(r, scs));
  const statements = built.map((b) => b.text);
  const cuts: [number, number][] = [];
  let text = pick(r, EDGE);
  built.forEach((b, i) => {
    text += i ? pick(r, SEPARATOR) : '';
    for (const [from, to] of b.cuts) cuts.push([text.length + from, text.length + to]);
    text += b.text;
  });
  // After a statement, a space: its last token may be `-` or `/`, which a comment opener would join.
  text += pick(r, ['', ' ']) + pick(r, EDGE.filter((e) => !e.startsWith('-') && !e.startsWith('/'))) + pick(r, ['', ' -- end', ' /* end */']);
  return { text, statements: text.includes(';') ? statements : [text.trim()], cuts };
}

const RUNS = 3000;

describe('splitter property: recorded statements are exactly the sent ones', () => {
  for (const scs of [true, false]) {
    it(`standard_conforming_strings = ${scs ? 'on' : 'off'}`, () => {
      for (let seed = 1; seed <= RUNS; seed++) {
        const { text, statements } = build(prng(seed), scs);
        const got = splitQuery(text, scs);
        if (got.unsplit || got.statements.length !== statements.length || got.statements.some((s, i) => s !== statements[i])) {
          expect({ seed, scs, text, got }).toEqual({ seed, scs, text, got: { statements, unsplit: false } });
        }
      }
    });
  }

  it('mode unknown: the exact statements, or the whole text marked unsplit', () => {
    let split = 0;
    let whole = 0;
    for (let seed = 1; seed <= RUNS; seed++) {
      const scs = seed % 2 === 0;
      const { text, statements } = build(prng(seed), scs);
      const got = splitQuery(text, undefined);
      const expected = got.unsplit ? { statements: [text.trim()], unsplit: true } : { statements, unsplit: false };
      if (got.unsplit) whole++;
      else split++;
      if (JSON.stringify(got) !== JSON.stringify(expected)) expect({ seed, scs, text, got }).toEqual({ seed, scs, text, got: expected });
    }
    // Both outcomes occur: the generator makes texts the modes agree on, and texts they do not.
    expect(split).toBeGreaterThan(0);
    expect(whole).toBeGreaterThan(0);
  });

  it('a text cut anywhere is split into pieces of itself, in order; cut inside a literal, it is kept whole', () => {
    let insideLiteral = 0;
    for (let seed = 1; seed <= RUNS; seed++) {
      const r = prng(seed);
      const scs = r() < 0.5;
      const built = build(r, scs);
      // Half the time, cut inside a quoted literal (if there is one): the server refuses such a text.
      const span = built.cuts.length && r() < 0.5 ? pick(r, built.cuts) : undefined;
      const cut = span ? span[0] + Math.floor(r() * (span[1] - span[0] + 1)) : Math.floor(r() * (built.text.length + 1));
      const text = built.text.slice(0, cut);
      const got = splitQuery(text, scs);
      if (span && text.includes(';')) {
        insideLiteral++;
        if (!got.unsplit || got.statements.length !== 1 || got.statements[0] !== text.trim()) expect({ seed, scs, text, got }).toEqual({ seed, scs, text, got: { statements: [text.trim()], unsplit: true } });
      }
      let at = 0;
      const ok = got.unsplit
        ? got.statements.length === 1 && got.statements[0] === text.trim()
        : got.statements.every((s) => {
            const found = text.indexOf(s, at);
            at = found + s.length;
            return s !== '' && found >= 0;
          });
      if (!ok) expect({ seed, scs, text, got }).toBe('pieces of the text, in order');
    }
    expect(insideLiteral).toBeGreaterThan(RUNS / 10);
  });
});
