/**
 * Extracts from the OCSF schema source (https://github.com/ocsf/ocsf-schema, release 1.8.0) only the structure
 * vigil's OCSF export uses — for each class and object we emit: attribute names, types, array-ness,
 * requirement, enum ids, activity captions and at-least-one constraints; no descriptions — into `schema-1.8.0.json` next to this
 * file, so the export test validates on any clone without the full schema.
 *
 *   npx tsx recorder/export/ocsf/extract-schema.ts [SCHEMA_DIR]   (default /work/shared/ocsf-schema-1.8.0)
 *
 * Resolution follows the schema's own rules: a class or object is its `extends` chain from the root, each
 * level's `$include` files (profiles: their attributes are tagged with the profile name, since an event may
 * use them only when it lists the profile in metadata.profiles), then the level's own attributes, each
 * merged over the dictionary entry of the same name. Enums merge down the chain (the class adds activities
 * to base_event's Unknown/Other).
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { OCSF_CLASSES, OCSF_OBJECTS } from './classes.ts';

type Json = Record<string, any>;

export interface FixtureAttribute {
  /** Scalar type (`string_t`, `integer_t`, `ip_t`, …) or object name. */
  type: string;
  array?: true;
  requirement: 'required' | 'recommended' | 'optional';
  /** Allowed ids of an enum attribute. */
  enum?: (number | string)[];
  /** Only allowed when `metadata.profiles` lists this profile. */
  profile?: string;
}

export interface FixtureShape {
  attributes: Record<string, FixtureAttribute>;
  at_least_one?: string[];
}

export interface OcsfFixture {
  version: string;
  /** Scalar types: the base type each refines, and the constraint a value must meet. */
  types: Record<string, { base: string; regex?: string; max_len?: number; range?: [number, number]; values?: unknown[] }>;
  /** Keyed by class_uid. */
  classes: Record<string, FixtureShape & { name: string; category_uid: number; class_uid: number; profiles: string[]; activities: Record<string, string> }>;
  objects: Record<string, FixtureShape>;
}

function readJson(file: string): Json {
  return JSON.parse(fs.readFileSync(file, 'utf8')) as Json;
}

export function extractOcsfFixture(schemaDir: string): OcsfFixture {
  const dictionary = readJson(path.join(schemaDir, 'dictionary.json'));
  const dictAttrs = dictionary.attributes as Json;
  const categories = readJson(path.join(schemaDir, 'categories.json')).attributes as Json;
  const eventFiles = new Map<string, string>();
  const walk = (dir: string) => {
    for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith('.json')) eventFiles.set(readJson(p).name as string, p);
    }
  };
  walk(path.join(schemaDir, 'events'));

  const enumIds = (e: Json | undefined): (number | string)[] | undefined =>
    e ? Object.keys(e).map((k) => (/^-?\d+$/.test(k) ? Number(k) : k)) : undefined;

  function merge(into: Record<string, FixtureAttribute>, name: string, own: Json, profile?: string, fromOwnLevel = false): void {
    const prev = into[name];
    const dict = dictAttrs[name] as Json | undefined;
    if (!prev && !dict) throw new Error(`attribute ${name} is in no dictionary`);
    const type = (own.type as string | undefined) ?? prev?.type ?? (dict!.type as string);
    const array = own.is_array ?? (prev ? prev.array : dict?.is_array);
    const requirement = (own.requirement as FixtureAttribute['requirement'] | undefined) ?? prev?.requirement ?? 'optional';
    const ids = new Set<number | string>([...(prev?.enum ?? enumIds(dict?.enum) ?? []), ...(enumIds(own.enum) ?? [])]);
    const a: FixtureAttribute = { type, requirement };
    if (array) a.array = true;
    if (ids.size) a.enum = [...ids].sort((x, y) => (typeof x === 'number' && typeof y === 'number' ? x - y : String(x).localeCompare(String(y))));
    // A level's own attribute belongs to the class even where a profile also defines it.
    const p = fromOwnLevel ? undefined : prev ? prev.profile : profile;
    if (p) a.profile = p;
    into[name] = a;
  }

  function applyLevel(doc: Json, into: Record<string, FixtureAttribute>, constraints: { at_least_one?: string[] }): void {
    const attrs = (doc.attributes ?? {}) as Json;
    for (const inc of (attrs.$include ?? []) as string[]) {
      const included = readJson(path.join(schemaDir, inc));
      const profile = included.meta === 'profile' ? (included.name as string) : undefined;
      for (const [k, v] of Object.entries(included.attributes as Json)) if (k !== '$include') merge(into, k, v as Json, profile);
    }
    for (const [k, v] of Object.entries(attrs)) if (k !== '$include') merge(into, k, v as Json, undefined, true);
    if (doc.constraints?.at_least_one) constraints.at_least_one = doc.constraints.at_least_one as string[];
  }

  function resolve(doc: Json, load: (name: string) => Json | undefined): FixtureShape {
    const chain: Json[] = [];
    for (let d: Json | undefined = doc; d; d = d.extends ? load(d.extends as string) : undefined) chain.unshift(d);
    const attributes: Record<string, FixtureAttribute> = {};
    const constraints: { at_least_one?: string[] } = {};
    for (const level of chain) applyLevel(level, attributes, constraints);
    const sorted = Object.fromEntries(Object.keys(attributes).sort().map((k) => [k, attributes[k]]));
    return constraints.at_least_one ? { attributes: sorted, at_least_one: constraints.at_least_one } : { attributes: sorted };
  }

  const loadEvent = (name: string) => readJson(eventFiles.get(name) ?? (() => { throw new Error(`no event class ${name}`); })());
  const loadObject = (name: string) => {
    const f = path.join(schemaDir, 'objects', `${name}.json`);
    return fs.existsSync(f) ? readJson(f) : undefined;
  };

  const classes: OcsfFixture['classes'] = {};
  for (const name of OCSF_CLASSES) {
    const doc = loadEvent(name);
    const category = (doc.category as string | undefined) ?? (() => {
      for (let d: Json | undefined = doc; d; d = d.extends ? loadEvent(d.extends as string) : undefined) if (d.category) return d.category as string;
      throw new Error(`class ${name} has no category`);
    })();
    const category_uid = categories[category].uid as number;
    const class_uid = category_uid * 1000 + (doc.uid as number);
    const shape = resolve(doc, loadEvent);
    const profiles = new Set<string>();
    for (let d: Json | undefined = doc; d; d = d.extends ? loadEvent(d.extends as string) : undefined) for (const p of (d.profiles ?? []) as string[]) profiles.add(p);
    // The source leaves these enums to the compiler: an event of this class has exactly these values.
    shape.attributes.class_uid = { ...shape.attributes.class_uid, enum: [class_uid] };
    shape.attributes.category_uid = { ...shape.attributes.category_uid, enum: [category_uid] };
    // Each activity id's caption: an event's activity_name must be it (a name and an id that disagree
    // mislead a SIEM keyed on type_uid), except for Other (99), whose name the producer chooses.
    const activities: Record<string, string> = {};
    const captions = (e: Json | undefined) => { for (const [id, v] of Object.entries(e ?? {})) activities[id] = (v as Json).caption as string; };
    captions((dictAttrs.activity_id as Json | undefined)?.enum as Json | undefined);
    const chain: Json[] = [];
    for (let d: Json | undefined = doc; d; d = d.extends ? loadEvent(d.extends as string) : undefined) chain.unshift(d);
    for (const level of chain) captions(level.attributes?.activity_id?.enum as Json | undefined);
    classes[String(class_uid)] = { name, category_uid, class_uid, profiles: [...profiles].sort(), activities, ...shape };
  }
  const objects: OcsfFixture['objects'] = {};
  for (const name of OCSF_OBJECTS) {
    const doc = loadObject(name);
    if (!doc) throw new Error(`no object ${name}`);
    objects[name] = resolve(doc, loadObject);
  }
  const types: OcsfFixture['types'] = {};
  for (const [name, t] of Object.entries(dictionary.types.attributes as Json)) {
    const entry: OcsfFixture['types'][string] = { base: (t.type as string | undefined) ?? name };
    if (t.regex) entry.regex = t.regex as string;
    if (t.max_len) entry.max_len = t.max_len as number;
    if (t.range) entry.range = t.range as [number, number];
    if (t.values) entry.values = t.values as unknown[];
    types[name] = entry;
  }
  const version = readJson(path.join(schemaDir, 'version.json')).version as string;
  return { version, types, classes, objects };
}

export const FIXTURE_FILE = path.join(path.dirname(fileURLToPath(import.meta.url)), 'schema-1.8.0.json');

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const fixture = extractOcsfFixture(process.argv[2] ?? '/work/shared/ocsf-schema-1.8.0');
  if (fixture.version !== '1.8.0') throw new Error(`expected schema 1.8.0, got ${fixture.version}`);
  // One class/object/type per line: compact, yet a schema update shows as a readable diff.
  const section = (o: Record<string, unknown>) => '{\n' + Object.entries(o).map(([k, v]) => `  ${JSON.stringify(k)}: ${JSON.stringify(v)}`).join(',\n') + '\n}';
  const text = `{"version": ${JSON.stringify(fixture.version)},\n"types": ${section(fixture.types)},\n"classes": ${section(fixture.classes)},\n"objects": ${section(fixture.objects)}\n}\n`;
  fs.writeFileSync(FIXTURE_FILE, text);
  process.stdout.write(`wrote ${FIXTURE_FILE}: ${Object.keys(fixture.classes).length} classes, ${Object.keys(fixture.objects).length} objects, ${text.length} bytes\n`);
}
