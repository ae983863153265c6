import type { Command } from '../command.ts';
import { serveCommand, initCommand, configCheckCommand } from './gateway.ts';
import { ACCESS_COMMANDS } from './access.ts';
import { CERT_COMMANDS } from './cert.ts';
import { LOGIN_COMMANDS } from './login.ts';
import { AUDIT_COMMANDS } from './audit.ts';
import { AUDIT_EXPORT_COMMANDS } from './audit-export.ts';
import { AUDIT_BUNDLE_COMMANDS } from './audit-bundle.ts';
import { REPLAY_COMMANDS } from './replay.ts';
import { RETENTION_COMMANDS } from './retention.ts';
import { REPORT_COMMANDS } from './report.ts';
import { ALERT_COMMANDS } from './alerts.ts';
import { SESSION_COMMANDS } from './sessions.ts';
import { configReloadCommand } from './config-reload.ts';
import { caRotateCommand } from './ca-rotate.ts';
import { doctorCommand } from './doctor.ts';

/**
 * The core's CLI commands, in the order `vigil --help` lists them; app/commands.ts appends the proxies' own.
 * One line per command module.
 */
export const COMMANDS: Command[] = [
  serveCommand,
  initCommand,
  configCheckCommand,
  ...LOGIN_COMMANDS,
  configReloadCommand,
  doctorCommand,
  ...CERT_COMMANDS,
  caRotateCommand,
  ...ACCESS_COMMANDS,
  ...AUDIT_COMMANDS,
  ...AUDIT_EXPORT_COMMANDS,
  ...AUDIT_BUNDLE_COMMANDS,
  ...REPLAY_COMMANDS,
  ...RETENTION_COMMANDS,
  ...REPORT_COMMANDS,
  ...ALERT_COMMANDS,
  ...SESSION_COMMANDS,
];
