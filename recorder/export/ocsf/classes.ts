/**
 * The OCSF event classes and objects vigil's export emits (see mapping.ts). extract-schema.ts copies just
 * these from the schema source into the fixture the tests validate against; add a name here before
 * mapping an event to a new class or filling a new object.
 */
export const OCSF_CLASSES = [
  'authentication', // 3002
  'authorize_session', // 3003
  'entity_management', // 3004
  'user_access', // 3005
  'account_change', // 3001
  'ssh_activity', // 4007
  'network_activity', // 4001
  'file_activity', // 1001
  'datastore_activity', // 6005
  'api_activity', // 6003
  'application_lifecycle', // 6002
] as const;

export const OCSF_OBJECTS = [
  'metadata', 'product', 'actor', 'user', 'network_endpoint', 'session', 'query_info', 'database',
  'device', 'file', 'managed_entity', 'api', 'service',
] as const;
