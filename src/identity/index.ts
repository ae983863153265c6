/**
 * Identity: vigil's certificate authorities, short-lived credential issuance, and the single verification
 * module every protocol uses. `initIdentity` creates the keys (idempotent); `openIdentity` serves them.
 */
export { initIdentity, caDir, CA_FILES, type InitOptions } from './ca.ts';
export { openIdentity, OPENSSH_EXTENSIONS } from './service.ts';
export type * from './types.ts';
