import type { Logger } from 'pino';
import type { EventBus } from './events/bus.ts';
import { traceEvent } from './telemetry-events.ts';

/**
 * OpenTelemetry: the SDK starts only when OTEL_EXPORTER_OTLP_ENDPOINT is set; otherwise the API stays
 * the no-op default and costs nothing. Proxies create one span per session through @opentelemetry/api.
 */
export async function startTelemetry(log: Logger): Promise<{ enabled: boolean; traceEvents(events: EventBus): void; shutdown(): Promise<void> }> {
  if (!process.env.OTEL_EXPORTER_OTLP_ENDPOINT) return { enabled: false, traceEvents: () => {}, shutdown: async () => {} };
  const { NodeSDK } = await import('@opentelemetry/sdk-node');
  const sdk = new NodeSDK({ serviceName: process.env.OTEL_SERVICE_NAME ?? 'vigil' });
  sdk.start();
  log.info({ endpoint: process.env.OTEL_EXPORTER_OTLP_ENDPOINT }, 'OpenTelemetry started');
  let unsubscribe = () => {};
  return {
    enabled: true,
    // Alerts, guardrail decisions, live-session control and approval steps as spans (src/telemetry-events.ts).
    traceEvents: (events) => void (unsubscribe = events.subscribe(traceEvent)),
    shutdown: () => (unsubscribe(), sdk.shutdown()),
  };
}
