import { openConfiguredRecordings } from '../../../recorder/recordings/storage.ts';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { UsageError, requireOpt, stringOpt, type Command } from '../command.ts';
import { loadFromArgs, localUser } from '../context.ts';
import { auditOptions, dataPaths } from '../../data-dir.ts';
import { EventBus } from '../../events/bus.ts';
import type { EventInput } from '../../events/envelope.ts';
import { silentLogger } from '../../log.ts';
import { NotFoundError } from '../../errors.ts';
import { openAuditForCli } from '../../../recorder/audit/index.ts';
import { AtomicFile } from '../../../recorder/export/index.ts';
import { makeBundle, verifyBundle, BundleError, BUNDLE_EXIT_CODES, type BundleFilter } from '../../../recorder/bundle/index.ts';
import { iso, parseIsoBound, type TimeBound } from '../../../recorder/audit/read.ts';
import { readWitness } from '../../../recorder/audit/witness.ts';
import { replicaIdOf } from '../../../recorder/audit/shared-index.ts';
import { isShortKeyId, parseKeyFingerprint } from '../../../recorder/bundle/format.ts';
import type { SignedHead } from '../../../recorder/audit/record.ts';
import { AUDIT_FILTER_OPTIONS, parseTimeArg } from './audit.ts';

function packageVersion(): string {
  try {
    return (JSON.parse(fs.readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string }).version;
  } catch {
    return '0.0.0';
  }
}

/**
 * `--since`/`--until` of a bundle or a report: a duration back from now, or an ISO time read at the precision
 * it is written in, with a zone (an `--until` covers its whole last second, minute or day: parseIsoBound).
 */
export function timeBoundArg(flag: 'since' | 'until', text: string | undefined, now: number): TimeBound | undefined {
  if (text === undefined) return undefined;
  let bound: TimeBound | undefined;
  try {
    bound = parseIsoBound(text, flag);
  } catch (e) {
    throw new UsageError(`--${flag}: ${(e as Error).message}`);
  }
  if (bound) return bound;
  // Not a date: a duration (anything else is refused there with the usual message).
  const d = parseTimeArg(flag, text, now)!;
  return { time: iso(d)!, date: d };
}

export const auditBundleCommand: Command = {
  name: 'audit bundle',
  summary: 'Make a signed evidence bundle (tar): the selected events, the chain proving them unaltered and complete, their recordings, the public key and a signed manifest.',
  usage: '--since 2h|ISO [--until 2h|ISO] [--user U] [--target T] [--type PREFIX] [--session ID] [--witness FILE|URL]… --out case.tar',
  options: {
    ...AUDIT_FILTER_OPTIONS,
    out: { type: 'string', short: 'o', arg: 'FILE', help: 'the bundle (tar) to write (required)' },
    witness: { type: 'string', arg: 'FILE|URL', multiple: true, help: 'signed heads kept elsewhere the log must reach (default: audit.witness of the config)' },
  },
  examples: ['audit bundle --since 2026-03-01T00:00:00Z --until 2026-03-01T23:59:59Z --user alice --out case-4211.tar'],
  async run(args) {
    const now = Date.now();
    const since = timeBoundArg('since', requireOpt(args.values, 'since'), now)!;
    const until = timeBoundArg('until', stringOpt(args.values, 'until'), now) ?? { time: iso(new Date(now))!, date: new Date(now) };
    const outPath = requireOpt(args.values, 'out');
    if (outPath === '-') throw new UsageError('--out: name a file (the archive is written whole or not at all)');
    if (fs.statSync(outPath, { throwIfNoEntry: false })?.isDirectory()) throw new UsageError(`--out: ${outPath} is a directory; name the file to write`);
    const filter: BundleFilter = {};
    for (const k of ['user', 'target', 'type', 'session'] as const) {
      const v = stringOpt(args.values, k);
      if (v !== undefined) filter[k] = v;
    }
    const { config, dataDir } = loadFromArgs(args);
    const paths = dataPaths(dataDir);
    if (!fs.existsSync(paths.audit)) throw new NotFoundError(`no audit log in ${dataDir}`);
    const actor = { user: localUser(), roles: [] as string[] };
    const source = { ip: 'local', via: `cli:${actor.user}@${os.hostname()}` };
    const target = { name: 'audit', protocol: 'vigil' };
    // The bounds as the selection applies them (inclusive, microseconds), not as typed.
    const filterText = [...Object.entries(filter).map(([k, v]) => `--${k} ${v}`), `--since ${since.time}`, `--until ${until.time}`].join(' ');
    const details = { filter, filter_text: filterText, since: since.time, until: until.time, out: path.resolve(outPath) };
    const record = async (event: Omit<EventInput, 'source' | 'actor' | 'target' | 'type'>) => {
      const audit = await openAuditForCli(paths.audit, auditOptions(dataDir, config, silentLogger()));
      try {
        await new EventBus(audit).emit({ ...event, type: 'audit.bundle', actor, source, target });
      } finally {
        await audit.close();
      }
    };
    let file: AtomicFile | undefined;
    try {
      try {
        file = new AtomicFile(outPath);
      } catch (e) {
        throw new UsageError(`--out: cannot create a file beside ${outPath} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
      }
      let made;
      try {
        // A log cut back together with its head.json still verifies on its own: only a head kept off this
        // host shows it, and the bundle would otherwise call the cut log's last record the newest.
        const witnessSources = (args.values.witness as string[] | undefined) ?? [config.audit.witness?.file, config.audit.witness?.url].filter((s): s is string => !!s);
        const witnesses: { head: SignedHead; source: string }[] = [];
        for (const w of witnessSources) {
          try {
            witnesses.push(...(await readWitness(w)));
          } catch (e) {
            // A witness URL may hold its credential (user:password@, a token in the path): named by its origin only.
            const shown = /^https?:\/\//i.test(w) ? (URL.canParse(w) ? new URL(w).origin : 'the witness URL') : w;
            const why = String((e as NodeJS.ErrnoException).code ?? (e as Error).message).replace(/\bhttps?:\/\/\S+/gi, shown);
            throw new BundleError(`cannot read the witness ${shown} (${why}): without it a log cut back cannot be told, so no bundle was made`);
          }
        }
        made = await makeBundle(
          {
            auditDir: paths.audit,
            recordingsDir: paths.recordings,
            recordings: await openConfiguredRecordings(paths.recordings, config.recording.storage),
            signingKeyFile: paths.auditSigningKey,
            since: since.time,
            until: until.time,
            filter,
            createdBy: { user: actor.user, host: os.hostname() },
            gateway: { host: os.hostname(), data_dir: path.resolve(dataDir), version: packageVersion() },
            // Each replica keeps its own chain: the bundle says whose, and whether others record beside it.
            chainOf: { replica: replicaIdOf(dataDir), store_shared: config.store.kind === 'postgres' },
            witnesses,
            now: new Date(now),
          },
          file.stream,
        );
        await file.finish();
      } catch (e) {
        file.abort();
        file = undefined;
        await record({ outcome: 'failure', details: { ...details, error: (e as Error).message } });
        throw e;
      }
      const m = made.manifest;
      // The archive appears only once its making is on the record.
      await record({
        outcome: 'success',
        details: {
          ...details,
          manifest_sha256: made.manifestSha256,
          key_id: m.gateway.audit_key_id,
          key_fingerprint: m.gateway.audit_key_fingerprint,
          ...(m.chain_of ? { replica: m.chain_of.replica, store_shared: m.chain_of.store_shared } : {}),
          chain_seq: m.chain_seq,
          range_seq: m.range_seq,
          counts: m.counts,
          recordings_unavailable: m.recordings_unavailable.length,
        },
      });
      file.commit();
      file = undefined;
      args.err.write(
        `bundle ${outPath}: ${m.counts.events} event(s), ${m.counts.recordings} recording(s)` +
          `${m.recordings_unavailable.length ? ` (${m.recordings_unavailable.length} no longer available)` : ''}, chain seq ${m.chain_seq.first}..${m.chain_seq.last}` +
          ` (${m.counts.chain_records} records, ${m.counts.checkpoints} checkpoints) of replica ${m.chain_of?.replica ?? '-'}'s chain, signed by the audit key with fingerprint SHA256 ${m.gateway.audit_key_fingerprint}\n`,
      );
      return 0;
    } finally {
      file?.abort();
    }
  },
};

const VERIFY_BUNDLE_HELP = `
  Needs nothing but the archive: no data directory, configuration or account.
  --key PEM|FINGERPRINT
              the audit public key you trust (a PEM file, e.g. from the gateway operator) or its full SHA-256
              fingerprint (64 hex); without it the bundle's own key is used and its full fingerprint printed,
              to compare with the published one. The 16-hex key id is refused: too short to pin a key.
  Exit codes (the first problem found decides; every problem is printed):
    0  ok: every event is in the chain and unaltered, the selection is complete for its filter and range
       over the chain of the replica that made it (with a shared store, other replicas' events are in
       their own chains), recordings match their hashes, the manifest is signed
    1  altered: an event or chain record differs from what the hashes say
    2  usage error
    3  removed: records are missing from the chain
    4  incomplete: an event of the range matching the filter is withheld (or the chain does not reach the
       range's edges)
    5  recording missing, or not matching its hash in the manifest or the one its recording.stored
       event logged (swapped)
    6  a checkpoint is not signed by the bundle's key, or part of the chain is not covered by one
    7  manifest: signature broken, or the manifest disagrees with the archive
    8  unreadable: not a bundle (not a tar, a member missing, malformed)
    9  wrong key: signed by another key than the one given with --key`;

export const auditVerifyBundleCommand: Command = {
  name: 'audit verify-bundle',
  summary: 'Verify an evidence bundle offline: events in the chain and unaltered, selection complete, recordings intact, manifest signed.',
  usage: 'BUNDLE.tar [--key PUBLIC_KEY_PEM|SHA256_FINGERPRINT] [--json]\n' + VERIFY_BUNDLE_HELP,
  options: {
    key: { type: 'string', arg: 'PEM|FINGERPRINT', help: 'the audit public key you trust, or its full SHA-256 fingerprint (default: the bundle\'s own key, whose fingerprint is printed)' },
    json: { type: 'boolean', help: 'print the verification result as one JSON object' },
  },
  examples: ['audit verify-bundle case-4211.tar --key vigil-audit.pub'],
  positionals: true,
  async run(args) {
    if (args.positionals.length !== 1) throw new UsageError('name one bundle file');
    const file = args.positionals[0];
    if (!fs.statSync(file, { throwIfNoEntry: false })?.isFile()) {
      args.err.write(`bundle UNREADABLE: ${file} is not a file\n`);
      return BUNDLE_EXIT_CODES.unreadable;
    }
    const keyArg = stringOpt(args.values, 'key');
    let expectedKeyPem: Buffer | undefined;
    let expectedFingerprint: string | undefined;
    if (keyArg !== undefined) {
      const isFile = fs.statSync(keyArg, { throwIfNoEntry: false })?.isFile() === true;
      if (!isFile && parseKeyFingerprint(keyArg)) expectedFingerprint = keyArg;
      // A 64-bit id can be matched by a key made for the purpose: refused rather than trusted as a pin.
      else if (!isFile && isShortKeyId(keyArg)) throw new UsageError(`--key: ${keyArg} is a 16-hex key id, too short to pin a key (a key sharing it can be made); pass the key's full SHA-256 fingerprint (64 hex, as verify-bundle prints it) or the public key file (PEM)`);
      else {
        try {
          expectedKeyPem = fs.readFileSync(keyArg);
        } catch (e) {
          args.err.write(`bundle UNREADABLE: cannot read the key ${keyArg} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}); --key takes a public key file (PEM) or its full SHA-256 fingerprint (64 hex)\n`);
          return BUNDLE_EXIT_CODES.unreadable;
        }
      }
    }
    let r;
    try {
      r = await verifyBundle(file, { expectedKeyPem, expectedFingerprint });
    } catch (e) {
      // Whatever a hostile archive trips over is "not a bundle", never exit 1 (altered).
      args.err.write(`bundle UNREADABLE: ${(e as Error).message}\n`);
      return BUNDLE_EXIT_CODES.unreadable;
    }
    const m = r.manifest;
    if (args.values.json === true) {
      args.out.write(JSON.stringify({ ok: r.ok, code: r.code, problems: r.problems, key_id: r.keyId, key_fingerprint: r.keyFingerprint, events: r.events, chain_records: r.chainRecords, checkpoints: r.checkpoints, recordings: r.recordings, recordings_stored: r.recordingsStored, boundaries: r.boundaries, manifest: m }) + '\n');
      return r.code;
    }
    if (!r.ok) {
      args.err.write(`bundle INVALID [${r.problems[0].kind}]: ${r.problems[0].message}\n`);
      for (const p of r.problems.slice(1)) args.err.write(`  also [${p.kind}]: ${p.message}\n`);
      return r.code;
    }
    const filterText = Object.entries(m!.filter).map(([k, v]) => `--${k} ${v}`).join(' ') || '(no filter)';
    const chainOf = m!.chain_of;
    // Complete means complete over one replica's chain: with a shared store the others keep theirs.
    const scope = !chainOf
      ? 'the manifest does not name the replica whose chain this is (made before it did): with replicas on a shared store, events other replicas recorded are not in it'
      : chainOf.store_shared
        ? `covers the chain of replica ${chainOf.replica} only: it shared its state store with other replicas, and events they recorded are in their own chains, not in this bundle`
        : `covers the chain of replica ${chainOf.replica} (the store was not shared: no other replica recorded events)`;
    args.out.write(
      `bundle ok: ${r.events} event(s) for ${filterText} from ${m!.range.since} to ${m!.range.until}, complete over chain seq ${m!.chain_seq.first}..${m!.chain_seq.last}` +
        ` (${r.chainRecords} records, ${r.checkpoints} signed checkpoints), ${r.recordings} recording(s) intact` +
        // Say which recordings only the manifest vouches for: those no recording.stored event names.
        `${r.recordings ? ` (${r.recordingsStored} matching the SHA-256 the log holds for them (recording.stored or recording.closed), ${r.recordings - r.recordingsStored} with neither in the chain: vouched for by the manifest only)` : ''}` +
        `${m!.recordings_unavailable.length ? `, ${m!.recordings_unavailable.length} no longer available when it was made` : ''}\n` +
        `  ${r.boundaries.join('; ')}\n` +
        `  ${scope}\n` +
        `  signed by the audit key with SHA-256 fingerprint ${r.keyFingerprint} (key id ${r.keyId})${keyArg !== undefined ? ' (the trusted key given)' : ' — compare the whole fingerprint with the one the gateway operator publishes, or pass it or the key with --key'}; made ${m!.created} by ${m!.created_by.user}@${m!.created_by.host} on gateway ${m!.gateway.host}\n`,
    );
    return 0;
  },
};

export const AUDIT_BUNDLE_COMMANDS: Command[] = [auditBundleCommand, auditVerifyBundleCommand];
