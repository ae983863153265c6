import type { Command } from '../command.ts';
import { loadFromArgs } from '../context.ts';
import { createLogger } from '../../log.ts';
import { initIdentity } from '../../identity/index.ts';

export const serveCommand: Command = {
  name: 'serve',
  summary: 'Run the gateway (creates the CA and keys on first start).',
  usage: '[--config PATH] [--data DIR]',
  examples: ['serve --config /etc/vigil/vigil.yaml'],
  async run(args) {
    const { isGatewayWorker, runGatewayWorker, configFromPrimary } = await import('../../gateway/workers/worker.ts');
    if (isGatewayWorker()) {
      // Forked by the primary below (gateway.workers > 1): protocol listeners only; the primary drives it.
      // It runs the primary's configuration, not the file's (which may have changed since the primary read it).
      const running = await configFromPrimary();
      await runGatewayWorker(running, { log: createLogger(running.config.log.level), proxies: args.proxies ?? [] });
      process.exit(0);
    }
    const loaded = loadFromArgs(args);
    const log = createLogger(loaded.config.log.level);
    const workers = loaded.config.gateway.workers;
    // Imported here so that `vigil --help` and other commands do not load the gateway and its listeners.
    const { startGateway } = await import('../../gateway/gateway.ts');
    // Signals are taken from the start: one that arrives while the gateway is still starting shuts it
    // down once it is up, and a second one while draining does not kill the process mid-close.
    let signalled: ((sig: string) => void) | undefined;
    let early: string | undefined;
    const onSignal = (sig: string) => (signalled ? signalled(sig) : (early ??= sig));
    process.on('SIGTERM', () => onSignal('SIGTERM'));
    process.on('SIGINT', () => onSignal('SIGINT'));
    const gw = await startGateway(loaded, { log, proxies: args.proxies, workers });
    // SIGHUP re-reads the config file; an invalid one is logged with its key and the old config stays.
    process.on('SIGHUP', () => {
      log.info({ signal: 'SIGHUP' }, 'reloading configuration');
      gw.reload({ via: 'signal' }).catch((e) => log.error({ err: e }, 'config reload failed'));
    });
    // The pid is in the message (the pretty log hides pino's pid field): it is the process to send SIGHUP to.
    // `npm start` runs this under npm and tsx, which do not pass SIGHUP on.
    // "(pid N)" stays as the README quotes it, whatever the number of workers (gateway.workers defaults to the CPUs).
    log.info({ ports: gw.ports, data: loaded.dataDir, pid: process.pid, workers }, `vigil gateway running (pid ${process.pid})${workers > 1 ? ` with ${workers} worker processes` : ''}`);
    await new Promise<void>((resolve) => {
      let closing = false;
      signalled = (sig: string) => {
        if (closing) return void log.info({ signal: sig }, 'already shutting down');
        closing = true;
        log.info({ signal: sig }, 'shutting down: draining live sessions');
        gw.close().then(resolve, (e) => {
          log.error({ err: e }, 'shutdown failed');
          resolve();
        });
      };
      if (early) signalled(early);
    });
    return 0;
  },
};

export const initCommand: Command = {
  name: 'init',
  summary: 'Create the certificate authorities, gateway keys and audit signing key (idempotent).',
  usage: '[--data DIR]',
  examples: ['init --data /var/lib/vigil'],
  async run(args) {
    const loaded = loadFromArgs(args);
    const created = await initIdentity(loaded.dataDir, loaded.config);
    args.out.write(created ? `created CA and keys in ${loaded.dataDir}\n` : `CA and keys already present in ${loaded.dataDir}\n`);
    return 0;
  },
};

export const configCheckCommand: Command = {
  name: 'config check',
  summary: 'Validate the configuration file and print a summary.',
  usage: '[--config PATH]',
  examples: ['config check --config /etc/vigil/vigil.yaml'],
  async run(args) {
    const loaded = loadFromArgs(args);
    const c = loaded.config;
    args.out.write(
      `config ok: ${loaded.file ?? '(built-in defaults)'}\n` +
        `  data dir: ${loaded.dataDir}\n` +
        `  targets: ${c.targets.length}, roles: ${c.roles.length}\n`,
    );
    return 0;
  },
};
