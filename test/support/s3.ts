import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import { createRequire } from 'node:module';
import { S3Client, ListObjectsV2Command, GetObjectCommand, CreateBucketCommand } from '@aws-sdk/client-s3';
import { tempDir, freePort } from './tmp.ts';

const require = createRequire(import.meta.url);

interface S3rverInstance {
  run(): Promise<{ port: number }>;
  close(): Promise<void>;
  httpServer?: import('node:http').Server;
}
type S3rverClass = new (o: Record<string, unknown>) => S3rverInstance;

/**
 * A real S3-compatible server (npm s3rver, in-process) on a random loopback port, storing into a temp dir,
 * with its own freshly made access key pair (random, so a test can grep logs and events for it).
 */
export interface S3Server {
  endpoint: string;
  port: number;
  bucket: string;
  accessKeyId: string;
  secretAccessKey: string;
  /** The server's storage directory. */
  dir: string;
  client: S3Client;
  /** Object keys under `prefix`. */
  keys(prefix?: string): Promise<string[]>;
  get(key: string): Promise<Buffer>;
  /**
   * Multipart uploads not completed yet, with the sizes of the parts received. s3rver has no ListParts;
   * it keeps each upload's parts as files `<dir>/<bucket>/._S3rver_uploads/<upload id>/<part number>`.
   */
  openUploads(): { key: string; parts: number[] }[];
  /** Stop answering (connections refused) and start again on the same port with the same storage. */
  stop(): Promise<void>;
  start(): Promise<void>;
  /** Stop for good and remove the storage. */
  close(): Promise<void>;
}

export async function startS3(bucket = 'vigil-recordings'): Promise<S3Server> {
  const S3rver = require('s3rver') as S3rverClass;
  const { DUMMY_ACCOUNT } = require('s3rver/lib/models/account') as { DUMMY_ACCOUNT: { createKeyPair(id: string, secret: string): void } };
  const accessKeyId = 'AKIA' + crypto.randomBytes(8).toString('hex').toUpperCase();
  const secretAccessKey = crypto.randomBytes(24).toString('base64url');
  DUMMY_ACCOUNT.createKeyPair(accessKeyId, secretAccessKey);
  const dir = tempDir('vigil-s3-');
  const port = await freePort();
  let server: S3rverInstance | undefined;
  const start = async () => {
    if (server) return;
    server = new S3rver({ address: '127.0.0.1', port, directory: dir, silent: true, vhostBuckets: false });
    await server.run();
  };
  await start();
  const endpoint = `http://127.0.0.1:${port}`;
  const client = new S3Client({
    endpoint,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: { accessKeyId, secretAccessKey },
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
  await client.send(new CreateBucketCommand({ Bucket: bucket }));
  return {
    endpoint,
    port,
    bucket,
    accessKeyId,
    secretAccessKey,
    dir,
    client,
    async keys(prefix = '') {
      const r = await client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix }));
      return (r.Contents ?? []).map((o) => o.Key!).sort();
    },
    async get(key) {
      const r = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
      return Buffer.from(await r.Body!.transformToByteArray());
    },
    openUploads() {
      const root = path.join(dir, bucket, '._S3rver_uploads');
      if (!fs.existsSync(root)) return [];
      return fs.readdirSync(root).map((id) => {
        const up = path.join(root, id);
        // A part is complete once s3rver has written its `.md5` beside it.
        const names = new Set(fs.readdirSync(up));
        const parts = [...names]
          .filter((n) => /^\d+$/.test(n) && names.has(`${n}.md5`))
          .sort((a, b) => Number(a) - Number(b))
          .map((n) => fs.statSync(path.join(up, n)).size);
        return { key: fs.readFileSync(path.join(up, 'key'), 'utf8'), parts };
      });
    },
    async stop() {
      const s = server;
      server = undefined;
      if (!s) return;
      // Clients keep connections alive: cut them, as a server going away would.
      const closed = s.close();
      s.httpServer?.closeAllConnections();
      await closed;
    },
    start,
    async close() {
      await (this as S3Server).stop().catch(() => {});
      client.destroy();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
