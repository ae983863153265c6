import type { Logger } from 'pino';

/**
 * OpenTelemetry: the SDK starts only when OTEL_EXPORTER_OTLP_ENDPOINT is set; otherwise the API stays
 * the no-op default and costs nothing. Proxies create one span per session through @opentelemetry/api.
 */
export async function startTelemetry(log: Logger): Promise<{ shutdown(): Promise<void> }> {
  if (!process.env.OTEL_EXPORTER_OTLP_ENDPOINT) return { shutdown: async () => {} };
  const { NodeSDK } = await import('@opentelemetry/sdk-node');
  const sdk = new NodeSDK({ serviceName: process.env.OTEL_SERVICE_NAME ?? 'vigil' });
  sdk.start();
  log.info({ endpoint: process.env.OTEL_EXPORTER_OTLP_ENDPOINT }, 'OpenTelemetry started');
  return { shutdown: () => sdk.shutdown() };
}
