import type { GatewayServices } from '../gateway/services.ts';
import { Approvals } from './approvals.ts';
import { openLinkStore } from './links.ts';

/** Approval notifications run when access.approvals.notify names notifiers (and so alerts run). */
export const wantsApprovals = (services: GatewayServices): boolean => services.config.access.approvals.notify.length > 0 && services.alerts !== undefined;

/**
 * Start telling approvers about requests when `access.approvals.notify` names notifiers (they share the
 * alerts' outbox and dispatcher, whichever alert service is current). Links point at `link_base`, else at the API's own listen address.
 */
export function startApprovals(services: GatewayServices, apiPort: number | undefined): { stop(): Promise<void> } | undefined {
  if (!wantsApprovals(services)) return undefined;
  // api.listen is bound at start; link_base and the rest of access.approvals follow config reloads.
  const listen = services.config.api.listen;
  const host = listen.host.includes(':') ? `[${listen.host}]` : listen.host;
  const links = openLinkStore(services.dataDir, services.store);
  services.accessLinks = links;
  // The alert service a config reload replaces closes its outbox: read the current one at each use.
  const alerts = () => {
    if (!services.alerts) throw new Error('approval notifications need the alert service, which a config reload removed');
    return services.alerts;
  };
  const approvals = new Approvals({
    get config() {
      return services.config.access.approvals;
    },
    store: services.store,
    events: services.events,
    links,
    get outbox() {
      return alerts().outbox;
    },
    get dispatcher() {
      return alerts().dispatcher;
    },
    get linkBase() {
      return (services.config.access.approvals.link_base ?? `https://${host}:${apiPort ?? listen.port}`).replace(/\/+$/, '');
    },
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
