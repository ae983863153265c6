import type { ProxyModule } from '../src/gateway/proxy.ts';
import { sshProxy } from './ssh/index.ts';
import { postgresProxy } from './postgres/index.ts';
import { mysqlProxy } from './mysql/index.ts';

/** Every protocol the gateway speaks. Adding a protocol = one folder + one line here. */
export const PROXIES: readonly ProxyModule<any>[] = [sshProxy, postgresProxy, mysqlProxy];
