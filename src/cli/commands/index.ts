import type { Command } from '../command.ts';
import { serveCommand, initCommand, configCheckCommand } from './gateway.ts';
import { ACCESS_COMMANDS } from './access.ts';
import { CERT_COMMANDS } from './cert.ts';
import { AUDIT_COMMANDS } from './audit.ts';
import { AUDIT_EXPORT_COMMANDS } from './audit-export.ts';
import { AUDIT_BUNDLE_COMMANDS } from './audit-bundle.ts';
import { REPLAY_COMMANDS } from './replay.ts';
import { RETENTION_COMMANDS } from './retention.ts';
import { REPORT_COMMANDS } from './report.ts';
import { ALERT_COMMANDS } from './alerts.ts';
import { configReloadCommand } from './config-reload.ts';
import { caRotateCommand } from './ca-rotate.ts';
import { doctorCommand } from './doctor.ts';
import { sshKnownHostsCommand } from '../../../proxies/ssh/cli.ts';

/** Every CLI command, in the order `vigil --help` lists them. One line per command module. */
export const COMMANDS: Command[] = [
  serveCommand,
  initCommand,
  configCheckCommand,
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
  sshKnownHostsCommand,
];
