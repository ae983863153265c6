/**
 * Signed evidence bundles: `vigil audit bundle` (make.ts) writes the selected events, the chain that proves
 * them unaltered and complete, their recordings, the public key and a signed manifest into one tar;
 * `vigil audit verify-bundle` (verify.ts) checks it with nothing but the archive. See README.md.
 */
export { makeBundle, BundleError, type MakeBundleOptions, type MadeBundle } from './make.ts';
export { verifyBundle, type BundleVerifyResult, type BundleProblem, type VerifyBundleOptions } from './verify.ts';
export { BUNDLE_EXIT_CODES, BUNDLE_FORMAT, FILES as BUNDLE_FILES, type BundleManifest, type BundleFilter } from './format.ts';
