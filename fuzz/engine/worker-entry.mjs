// Worker threads do not inherit the TypeScript loader the runner was started with: register it here,
// then load the real worker.
import { register } from 'tsx/esm/api';

register();
await import('./worker.ts');
