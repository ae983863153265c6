import { ProtocolError } from '../../../src/errors.ts';

/**
 * Why observing an SFTP stream failed or went odd. `fatal` means the observer has stopped (the stream
 * could not be decoded): the channel must stop relaying, since what follows would pass unrecorded.
 * Otherwise it carries on after this packet.
 */
export type SftpObserveCode =
  | 'VIGIL_SFTP_MALFORMED'
  | 'VIGIL_SFTP_OVERSIZED'
  | 'VIGIL_SFTP_UNSUPPORTED_VERSION'
  | 'VIGIL_SFTP_UNEXPECTED_REPLY'
  | 'VIGIL_SFTP_TOO_MANY_PENDING'
  | 'VIGIL_SFTP_TRUNCATED'
  /** A packet the protocol does not allow at this point (a request before INIT, a second INIT or VERSION, a reused request id; strict: a handle whose file is not settled). */
  | 'VIGIL_SFTP_OUT_OF_PHASE';

export class SftpObserveError extends ProtocolError {
  declare readonly code: SftpObserveCode;
  readonly fatal: boolean;
  /** Which side sent the offending bytes. */
  readonly direction: 'client' | 'server';
  constructor(code: SftpObserveCode, direction: 'client' | 'server', message: string, fatal: boolean) {
    super(`sftp ${direction} stream: ${message}`, code);
    this.fatal = fatal;
    this.direction = direction;
  }
}

/** Thrown by the pure decoders; the observer wraps it with the direction. */
export class SftpDecodeError extends Error {
  readonly code: SftpObserveCode;
  constructor(message: string, code: SftpObserveCode = 'VIGIL_SFTP_MALFORMED') {
    super(message);
    this.code = code;
  }
}
