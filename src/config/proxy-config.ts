import type { z } from 'zod';
import type { SchemaContext } from './types.ts';

/**
 * The config half of a protocol proxy's contract (src/gateway/proxy.ts extends it into ProxyModule):
 * all the config schema needs, so config does not depend on the gateway's services.
 */
export interface ProxyConfigPart<Section = unknown> {
  /** Protocol name: the config section key and the `protocol` value of its targets. */
  readonly name: string;
  /** Schema of the proxy's config section (must contain `enabled` and `listen`; use `listenerBase`). */
  sectionSchema(sc: SchemaContext): z.ZodType<Section>;
  /** Extra fields of a target of this protocol, merged with the common target fields. */
  targetFields(sc: SchemaContext): z.ZodRawShape;
}
