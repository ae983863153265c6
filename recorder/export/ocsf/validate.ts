import fs from 'node:fs';
import type { FixtureShape, OcsfFixture } from './extract-schema.ts';
import { FIXTURE_FILE } from './extract-schema.ts';

/**
 * Checks an OCSF event against the extracted schema structure (schema-1.8.0.json): the class from
 * class_uid; required attributes present; no attribute outside the class or object (profile attributes only
 * when metadata.profiles lists the profile); scalar types (and their refinements: regex, range, values);
 * arrays; enum ids; activity_name the caption of activity_id (except Other, 99); at-least-one constraints; objects recursively. `object`-typed attributes (unmapped) are
 * free-form. Returns the problems, each with its attribute path; empty when the event is valid.
 */
/** OCSF's Other: the one activity whose name the producer chooses. */
const OTHER_ACTIVITY = 99;

export function loadOcsfFixture(file = FIXTURE_FILE): OcsfFixture {
  return JSON.parse(fs.readFileSync(file, 'utf8')) as OcsfFixture;
}

export function validateOcsf(event: Record<string, unknown>, fixture: OcsfFixture): string[] {
  const problems: string[] = [];
  const cls = fixture.classes[String(event.class_uid)];
  if (!cls) return [`class_uid ${String(event.class_uid)} is not in the fixture`];
  const metadata = event.metadata as { profiles?: unknown } | undefined;
  const profiles = new Set(Array.isArray(metadata?.profiles) ? (metadata!.profiles as string[]) : []);
  for (const p of profiles) if (!cls.profiles.includes(p)) problems.push(`metadata.profiles: ${p} is not a profile of ${cls.name}`);
  checkShape(event, cls, cls.name, profiles, fixture, problems);
  if (typeof event.activity_id === 'number' && event.type_uid !== cls.class_uid * 100 + event.activity_id) {
    problems.push(`type_uid: expected ${cls.class_uid * 100 + event.activity_id}, got ${String(event.type_uid)}`);
  }
  const caption = typeof event.activity_id === 'number' && event.activity_id !== OTHER_ACTIVITY ? cls.activities[String(event.activity_id)] : undefined;
  if (caption !== undefined && event.activity_name !== caption) {
    problems.push(`activity_name: activity_id ${String(event.activity_id)} of ${cls.name} is ${JSON.stringify(caption)}, got ${JSON.stringify(event.activity_name)}`);
  }
  return problems;
}

function checkShape(value: Record<string, unknown>, shape: FixtureShape, at: string, profiles: Set<string>, fixture: OcsfFixture, problems: string[]): void {
  for (const [name, attr] of Object.entries(shape.attributes)) {
    if (attr.requirement === 'required' && (!attr.profile || profiles.has(attr.profile)) && value[name] === undefined) problems.push(`${at}.${name}: required attribute missing`);
  }
  for (const [name, v] of Object.entries(value)) {
    const attr = shape.attributes[name];
    const where = `${at}.${name}`;
    if (!attr) {
      problems.push(`${where}: not an attribute of ${at}`);
      continue;
    }
    if (attr.profile && !profiles.has(attr.profile)) {
      problems.push(`${where}: belongs to profile ${attr.profile}, which metadata.profiles does not list`);
      continue;
    }
    if (attr.array) {
      if (!Array.isArray(v)) problems.push(`${where}: expected an array`);
      else v.forEach((x, i) => checkValue(x, attr.type, attr.enum, `${where}[${i}]`, profiles, fixture, problems));
    } else {
      checkValue(v, attr.type, attr.enum, where, profiles, fixture, problems);
    }
  }
  if (shape.at_least_one && !shape.at_least_one.some((k) => value[k] !== undefined)) {
    problems.push(`${at}: needs at least one of ${shape.at_least_one.join(', ')}`);
  }
}

function checkValue(v: unknown, type: string, enumIds: (number | string)[] | undefined, where: string, profiles: Set<string>, fixture: OcsfFixture, problems: string[]): void {
  if (v === null) {
    problems.push(`${where}: null (leave the attribute out instead)`);
    return;
  }
  const scalar = fixture.types[type];
  if (scalar) {
    const base = scalar.base;
    const ok =
      base === 'string_t' ? typeof v === 'string'
      : base === 'integer_t' || base === 'long_t' ? Number.isSafeInteger(v)
      : base === 'float_t' ? typeof v === 'number' && Number.isFinite(v)
      : base === 'boolean_t' ? typeof v === 'boolean'
      : base === 'json_t' ? true
      : false;
    if (!ok) {
      problems.push(`${where}: expected ${type} (${base}), got ${JSON.stringify(v)}`);
      return;
    }
    if (scalar.regex && typeof v === 'string' && !new RegExp(scalar.regex).test(v)) problems.push(`${where}: ${JSON.stringify(v)} is not a valid ${type}`);
    if (scalar.range && typeof v === 'number' && (v < scalar.range[0] || v > scalar.range[1])) problems.push(`${where}: ${v} outside ${type} range ${scalar.range.join('..')}`);
    if (scalar.values && !scalar.values.includes(v)) problems.push(`${where}: ${JSON.stringify(v)} is not one of the ${type} values`);
    if (enumIds && !enumIds.includes(v as number | string)) problems.push(`${where}: ${JSON.stringify(v)} is not an enum id (${enumIds.join(', ')})`);
    return;
  }
  if (type === 'object') {
    if (typeof v !== 'object' || Array.isArray(v)) problems.push(`${where}: expected a JSON object`);
    return;
  }
  const shape = fixture.objects[type];
  if (!shape) {
    problems.push(`${where}: object type ${type} is not in the fixture (add it to OCSF_OBJECTS and re-extract)`);
    return;
  }
  if (typeof v !== 'object' || Array.isArray(v)) {
    problems.push(`${where}: expected a ${type} object`);
    return;
  }
  checkShape(v as Record<string, unknown>, shape, where, profiles, fixture, problems);
}
