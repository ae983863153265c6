import pino, { type Logger } from 'pino';

/**
 * Operational logs (not the audit log): JSON lines, pretty-printed when stdout is a terminal.
 * Backend secrets must never be passed to a logger; `redact` is a second line of defence.
 */
export function createLogger(level = 'info'): Logger {
  const pretty = process.stdout.isTTY && !process.env.VIGIL_LOG_JSON;
  return pino({
    level,
    base: { svc: 'vigil' },
    redact: { paths: ['password', '*.password', 'secret', '*.secret', 'token', '*.token', 'privateKey', '*.privateKey'], censor: '[redacted]' },
    transport: pretty ? { target: 'pino-pretty', options: { translateTime: 'SYS:HH:MM:ss.l', ignore: 'svc,pid,hostname' } } : undefined,
  });
}

/** A logger that drops everything, for CLI commands and tests that do not want operational output. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
