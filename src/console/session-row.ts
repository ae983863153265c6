/**
 * One session as the console's catalog lists it (`GET /console/api/sessions`). Its own module without
 * imports, so the browser code (console/, no Node types) shares the type with the server.
 */
export interface SessionRow {
  id: string;
  user: string;
  roles: string[];
  target: string;
  protocol: string;
  host?: string;
  login?: string;
  database?: string;
  source_ip?: string;
  started_at: string;
  ended_at?: string;
  end_reason?: string;
  duration_ms?: number;
  statements: number;
  commands: number;
  file_ops: number;
}
