import type { GatewayServices } from '../gateway/services.ts';
import { Approvals } from './approvals.ts';
import { openLinkStore } from './links.ts';

/**
 * Start telling approvers about requests when `access.approvals.notify` names notifiers (they share the
 * alerts' outbox and dispatcher). Links point at `link_base`, else at the API's own listen address.
 */
export function startApprovals(services: GatewayServices, apiPort: number | undefined): { stop(): Promise<void> } | undefined {
  const cfg = services.config.access.approvals;
  if (!cfg.notify.length || !services.alerts) return undefined;
  const listen = services.config.api.listen;
  const host = listen.host.includes(':') ? `[${listen.host}]` : listen.host;
  const linkBase = (cfg.link_base ?? `https://${host}:${apiPort ?? listen.port}`).replace(/\/+$/, '');
  const links = openLinkStore(services.dataDir, services.store);
  services.accessLinks = links;
  const approvals = new Approvals({
    config: cfg,
    store: services.store,
    events: services.events,
    links,
    outbox: services.alerts.outbox,
    dispatcher: services.alerts.dispatcher,
    linkBase,
    log: services.log.child({ component: 'approvals' }),
  });
  approvals.start();
  return {
    async stop() {
      await approvals.stop();
      services.accessLinks = undefined;
      await links.close();
    },
  };
}
