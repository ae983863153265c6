/**
 * A strict RFC 4180 parser for the export tests (no CSV library is installed): fields separated by commas,
 * records by CRLF; a quoted field may hold commas, CR, LF and doubled quotes; a quote inside an unquoted
 * field, text after a closing quote, a bare CR or LF outside quotes, or an unterminated quote is an error —
 * so a writer that gets quoting wrong fails here instead of being silently re-split.
 */
export function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let i = 0;
  const n = text.length;
  if (n === 0) return rows;
  for (;;) {
    let field = '';
    if (text[i] === '"') {
      i++;
      for (;;) {
        if (i >= n) throw new Error('unterminated quoted field');
        const c = text[i];
        if (c === '"') {
          if (text[i + 1] === '"') {
            field += '"';
            i += 2;
            continue;
          }
          i++;
          break;
        }
        field += c;
        i++;
      }
      if (i < n && text[i] !== ',' && text[i] !== '\r') throw new Error(`text after a closing quote at ${i}`);
    } else {
      while (i < n && text[i] !== ',' && text[i] !== '\r') {
        if (text[i] === '"') throw new Error(`quote inside an unquoted field at ${i}`);
        if (text[i] === '\n') throw new Error(`bare LF outside quotes at ${i}`);
        field += text[i];
        i++;
      }
    }
    row.push(field);
    if (i >= n) throw new Error('last record does not end with CRLF');
    if (text[i] === ',') {
      i++;
      continue;
    }
    // CR: must be CRLF.
    if (text[i + 1] !== '\n') throw new Error(`bare CR outside quotes at ${i}`);
    i += 2;
    rows.push(row);
    row = [];
    if (i >= n) return rows;
  }
}
