import crypto from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { parseUsername, resolveLogin } from '../../proxies/ssh/route.ts';
import { hostFieldMatches, isPinned, parseHostKeyLines, parseKnownHosts, hostKeyAlgorithms, knownHostsName } from '../../proxies/ssh/hostkeys.ts';
import type { TargetConfig } from '../../src/config/schema.ts';

const targets = new Set(['web1', 'db.prod']);
const isTarget = (n: string) => targets.has(n);

describe('username routing', () => {
  it('splits LOGIN@TARGET at the last @', () => {
    expect(parseUsername('root@web1', isTarget)).toEqual({ kind: 'target', target: 'web1', login: 'root' });
    expect(parseUsername('a@corp@web1', isTarget)).toEqual({ kind: 'target', target: 'web1', login: 'a@corp' });
    // An unknown target is still a target route: admission refuses it with an event.
    expect(parseUsername('root@nope', isTarget)).toEqual({ kind: 'target', target: 'nope', login: 'root' });
    expect(parseUsername('@web1', isTarget)).toEqual({ kind: 'target', target: 'web1', login: undefined });
  });
  it('a bare target name means its default login; any other bare name is a jump-host login', () => {
    expect(parseUsername('db.prod', isTarget)).toEqual({ kind: 'target', target: 'db.prod', login: undefined });
    expect(parseUsername('alice', isTarget)).toEqual({ kind: 'jump', user: 'alice' });
  });
  it('resolves the default login', () => {
    const t = { name: 'web1', default_login: 'deploy' } as unknown as TargetConfig;
    expect(resolveLogin(t, undefined)).toBe('deploy');
    expect(resolveLogin(t, 'root')).toBe('root');
    expect(resolveLogin({ name: 'x' } as unknown as TargetConfig, undefined)).toBeUndefined();
  });
});

function fakeKey(algo: string, body: string): { line: string; blob: Buffer } {
  const a = Buffer.from(algo);
  const b = Buffer.from(body);
  const blob = Buffer.concat([Buffer.from([0, 0, 0, a.length]), a, Buffer.from([0, 0, 0, b.length]), b]);
  return { line: `${algo} ${blob.toString('base64')} comment`, blob };
}

describe('backend host key pins', () => {
  const k1 = fakeKey('ssh-ed25519', 'one');
  const k2 = fakeKey('ssh-ed25519', 'two');
  const rsa = fakeKey('ssh-rsa', 'three');

  it('parses host_key lines and rejects garbage with the line number', () => {
    expect(parseHostKeyLines(`${k1.line}\n\n# c\n${rsa.line}`).map((k) => k.algo)).toEqual(['ssh-ed25519', 'ssh-rsa']);
    expect(() => parseHostKeyLines(`${k1.line}\nssh-ed25519 notbase64!`)).toThrow(/line 2/);
    // Algorithm name outside and inside the blob must agree.
    expect(() => parseHostKeyLines(k1.line.replace('ssh-ed25519', 'ssh-rsa'))).toThrow(/line 1/);
  });

  it('matches known_hosts names, ports, patterns, negation and hashed hosts', () => {
    expect(knownHostsName('h', 22)).toBe('h');
    expect(knownHostsName('h', 2200)).toBe('[h]:2200');
    expect(hostFieldMatches('a,h,b', 'h')).toBe(true);
    expect(hostFieldMatches('*.prod,!bad.prod', 'web.prod')).toBe(true);
    expect(hostFieldMatches('*.prod,!bad.prod', 'bad.prod')).toBe(false);
    const salt = crypto.randomBytes(20);
    const hash = crypto.createHmac('sha1', salt).update('[10.0.0.1]:2222').digest('base64');
    expect(hostFieldMatches(`|1|${salt.toString('base64')}|${hash}`, '[10.0.0.1]:2222')).toBe(true);
    expect(hostFieldMatches(`|1|${salt.toString('base64')}|${hash}`, '10.0.0.1')).toBe(false);
  });

  it('pins only the keys for host:port, honours @revoked, skips @cert-authority', () => {
    const text = [`[10.0.0.1]:2222 ${k1.line}`, `10.0.0.1 ${k2.line}`, `@cert-authority * ${rsa.line}`, `@revoked [10.0.0.1]:2222 ${k2.line}`].join('\n');
    const pins = parseKnownHosts(text, '10.0.0.1', 2222);
    expect(isPinned(pins, k1.blob)).toBe(true);
    expect(isPinned(pins, k2.blob)).toBe(false);
    expect(isPinned(pins, rsa.blob)).toBe(false);
    expect(hostKeyAlgorithms(pins)).toEqual(['ssh-ed25519']);
    expect(hostKeyAlgorithms({ keys: [{ algo: 'ssh-rsa', blob: rsa.blob }], revoked: [] })).toEqual(['rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa']);
  });
});
