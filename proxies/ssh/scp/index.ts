export { parseScpCommand, type ScpCommand } from './command.ts';
export { ScpObserver, ScpObserveError, type ScpObserverOptions, type ScpTransfer, type ScpOutcome } from './observer.ts';
