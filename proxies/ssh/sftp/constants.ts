/**
 * SFTP protocol version 3 numbers (draft-ietf-secsh-filexfer-02, the version OpenSSH speaks), plus the
 * OpenSSH extended requests that change files.
 */
export const SFTP_VERSION = 3;

export const FXP = {
  INIT: 1,
  VERSION: 2,
  OPEN: 3,
  CLOSE: 4,
  READ: 5,
  WRITE: 6,
  LSTAT: 7,
  FSTAT: 8,
  SETSTAT: 9,
  FSETSTAT: 10,
  OPENDIR: 11,
  READDIR: 12,
  REMOVE: 13,
  MKDIR: 14,
  RMDIR: 15,
  REALPATH: 16,
  STAT: 17,
  RENAME: 18,
  READLINK: 19,
  SYMLINK: 20,
  STATUS: 101,
  HANDLE: 102,
  DATA: 103,
  NAME: 104,
  ATTRS: 105,
  EXTENDED: 200,
  EXTENDED_REPLY: 201,
} as const;

/** SSH_FX_* status codes of version 3, by code. */
export const STATUS_NAMES: readonly string[] = [
  'OK',
  'EOF',
  'NO_SUCH_FILE',
  'PERMISSION_DENIED',
  'FAILURE',
  'BAD_MESSAGE',
  'NO_CONNECTION',
  'CONNECTION_LOST',
  'OP_UNSUPPORTED',
];
export const FX_OK = 0;
export const FX_EOF = 1;

/** SSH_FXF_* open flags, in the order they are reported. */
export const OPEN_FLAGS = [
  ['read', 0x01],
  ['write', 0x02],
  ['append', 0x04],
  ['create', 0x08],
  ['truncate', 0x10],
  ['excl', 0x20],
] as const;
export type OpenFlagName = (typeof OPEN_FLAGS)[number][0];

/** SSH_FILEXFER_ATTR_* flags. */
export const ATTR = {
  SIZE: 0x1,
  UIDGID: 0x2,
  PERMISSIONS: 0x4,
  ACMODTIME: 0x8,
  EXTENDED: 0x80000000,
} as const;

/** OpenSSH extended requests that modify the file system (the others are reads and are not reported). */
export const EXT = {
  POSIX_RENAME: 'posix-rename@openssh.com',
  HARDLINK: 'hardlink@openssh.com',
  LSETSTAT: 'lsetstat@openssh.com',
  FSYNC: 'fsync@openssh.com',
  /** Server-side copy between two open handles (OpenSSH `sftp> cp`). */
  COPY_DATA: 'copy-data',
  // Reads (not reported, but decoded: an extension vigil does not know is refused).
  STATVFS: 'statvfs@openssh.com',
  FSTATVFS: 'fstatvfs@openssh.com',
  LIMITS: 'limits@openssh.com',
  EXPAND_PATH: 'expand-path@openssh.com',
  HOME_DIRECTORY: 'home-directory',
  USERS_GROUPS_BY_ID: 'users-groups-by-id@openssh.com',
} as const;
