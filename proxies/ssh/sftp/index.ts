export { SftpObserver, type SftpObserverOptions, type SftpIntent, type SftpOperation, type SftpOutcome, type SftpStatus } from './observer.ts';
export { SftpObserveError, type SftpObserveCode } from './errors.ts';
export type { SftpAttrs } from './decode.ts';
