/**
 * Errors with stable codes. Callers branch on `code`, never on message text; messages are for humans
 * and must never contain backend secrets.
 */
export class VigilError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/** Invalid configuration. `path` is the dotted key path, e.g. `targets[0].port`. */
export class ConfigError extends VigilError {
  readonly path: string;
  constructor(path: string, message: string) {
    super('VIGIL_CONFIG_INVALID', path ? `${path}: ${message}` : message);
    this.path = path;
  }
}

/**
 * An authentication or authorization refusal. `reason` is a machine code recorded in the audit event
 * (`expired`, `wrong_ca`, `revoked`, …); `publicMessage` is what the client may see and leaks nothing
 * about backends or internal state.
 */
export class AccessDeniedError extends VigilError {
  readonly reason: string;
  readonly publicMessage: string;
  constructor(reason: string, publicMessage: string, detail?: string) {
    super('VIGIL_ACCESS_DENIED', detail ?? publicMessage);
    this.reason = reason;
    this.publicMessage = publicMessage;
  }
}

/** The audit log cannot be written: the gateway fails closed and refuses new sessions. */
export class AuditUnavailableError extends VigilError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('VIGIL_AUDIT_UNAVAILABLE', message, options);
  }
}

/**
 * The shared state store (PostgreSQL) cannot be reached: changes to access state are refused until it is
 * back. Live sessions are unaffected. The message never contains the store's credentials.
 */
export class StoreUnavailableError extends VigilError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('VIGIL_STORE_UNAVAILABLE', message, options);
  }
}

/** A protocol peer sent something we cannot accept (malformed, oversized, out of phase). */
export class ProtocolError extends VigilError {
  constructor(message: string, code = 'VIGIL_PROTOCOL') {
    super(code, message);
  }
}

/** The backend could not be reached or failed. The message is safe to show to the client. */
export class BackendError extends VigilError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('VIGIL_BACKEND_UNAVAILABLE', message, options);
  }
}

/** A state transition that is not allowed (approve a decided request, self-approval, …). */
export class ConflictError extends VigilError {
  constructor(code: string, message: string) {
    super(code, message);
  }
}

export class NotFoundError extends VigilError {
  constructor(message: string) {
    super('VIGIL_NOT_FOUND', message);
  }
}
