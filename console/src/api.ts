// The browser API of the server (docs/browser-api.md): login, statements answered as Arrow IPC
// streams, the catalog, and subscriptions over a WebSocket. Rows are Arrow, never JSON.

import { RecordBatchReader, Table, tableFromIPC } from 'apache-arrow';
import { BinaryReader, WireType } from '@bufbuild/protobuf/wire';

const TOKEN_KEY = 'quilldb.token';

/** An error as the server answers it: the gRPC code name and the message. */
export class ServerError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/** The token lives in this tab's sessionStorage: never a cookie, gone with the tab. */
export const session = {
  get token(): string | null {
    return sessionStorage.getItem(TOKEN_KEY);
  },
  set token(value: string | null) {
    if (value === null) sessionStorage.removeItem(TOKEN_KEY);
    else sessionStorage.setItem(TOKEN_KEY, value);
  },
};

async function refused(resp: Response): Promise<ServerError> {
  const code = resp.headers.get('x-quilldb-code') ?? `HTTP ${resp.status}`;
  const text = (await resp.text()).trim();
  return new ServerError(code, text || resp.statusText);
}

function authHeaders(): Record<string, string> {
  const token = session.token;
  return token ? { authorization: `Bearer ${token}` } : {};
}

/** Logs in with a user name and password; keeps the token. */
export async function login(user: string, password: string): Promise<void> {
  const basic = btoa(String.fromCharCode(...new TextEncoder().encode(`${user}:${password}`)));
  const resp = await fetch('/v1/login', {
    method: 'POST',
    headers: { authorization: `Basic ${basic}` },
  });
  if (!resp.ok) throw await refused(resp);
  session.token = (await resp.text()).trim();
}

/** Ends the session on the server and forgets the token. */
export async function logout(): Promise<void> {
  try {
    await fetch('/v1/logout', { method: 'POST', headers: authHeaders() });
  } finally {
    session.token = null;
  }
}

/** Reads a whole body, keeping what came before a broken end. */
async function readBody(resp: Response): Promise<{ bytes: Uint8Array; broken: string | null }> {
  const reader = resp.body?.getReader();
  if (!reader) return { bytes: new Uint8Array(await resp.arrayBuffer()), broken: null };
  const chunks: Uint8Array[] = [];
  let size = 0;
  let broken: string | null = null;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      chunks.push(value);
      size += value.length;
    }
  } catch (e) {
    broken = e instanceof Error ? e.message : String(e);
  }
  const bytes = new Uint8Array(size);
  let at = 0;
  for (const c of chunks) {
    bytes.set(c, at);
    at += c.length;
  }
  return { bytes, broken };
}

/** The result of a statement, with the raw IPC bytes (for the Parquet download). */
export interface Result {
  table: Table;
  ipc: Uint8Array;
}

/** Turns an IPC body into a table; an error stream after it becomes a ServerError. */
function decodeResult(bytes: Uint8Array, broken: string | null): Result {
  let table: Table | null = null;
  for (const reader of RecordBatchReader.readAll(bytes)) {
    const batches = [...reader];
    if (reader.schema.metadata.get('quilldb.error') === '1') {
      const row = batches[0]?.get(0);
      throw new ServerError(String(row?.code ?? 'INTERNAL'), String(row?.message ?? 'the result failed'));
    }
    table ??= new Table(reader.schema, batches);
  }
  if (broken !== null) throw new ServerError('UNAVAILABLE', `the result broke off: ${broken}`);
  if (table === null) throw new ServerError('INTERNAL', 'the server answered no result stream');
  return { table, ipc: bytes };
}

/** Runs one statement; its result as an Arrow table. */
export async function query(sql: string, signal?: AbortSignal): Promise<Result> {
  const resp = await fetch('/v1/statements', {
    method: 'POST',
    headers: { ...authHeaders(), 'content-type': 'text/plain; charset=utf-8' },
    body: sql,
    signal,
  });
  if (!resp.ok) throw await refused(resp);
  const { bytes, broken } = await readBody(resp);
  return decodeResult(bytes, broken);
}

/** Every namespace, table and column the user may see, in one request. */
export async function catalog(): Promise<Table> {
  const resp = await fetch('/v1/catalog', { headers: authHeaders() });
  if (!resp.ok) throw await refused(resp);
  return tableFromIPC(new Uint8Array(await resp.arrayBuffer()));
}

/** The same rows as a Parquet file, converted by the server. */
export async function toParquet(ipc: Uint8Array): Promise<Blob> {
  const resp = await fetch('/v1/parquet', {
    method: 'POST',
    headers: { ...authHeaders(), 'content-type': 'application/vnd.apache.arrow.stream' },
    body: ipc as BodyInit,
  });
  if (!resp.ok) throw await refused(resp);
  return resp.blob();
}

/** The server's Prometheus text. */
export async function metricsText(): Promise<string> {
  const resp = await fetch('/metrics');
  if (!resp.ok) throw await refused(resp);
  return resp.text();
}

/** `SubscriptionEvent.Kind` of flight/proto/subscription.proto. */
export const EVENT_KINDS = ['ACK', 'INITIAL', 'INITIAL_DONE', 'CHANGE', 'CLOSED', 'ERROR', 'HEARTBEAT'] as const;
export type EventKind = (typeof EVENT_KINDS)[number];

/** A `SubscriptionEvent`, with the rows it carried. */
export interface LiveEvent {
  kind: EventKind;
  subscriptionId: string;
  lastSeq: bigint;
  code: string;
  message: string;
  rows: Table | null;
  bytes: number;
}

/** Decodes a serialized `SubscriptionEvent` (proto3: absent fields are defaults). */
export function decodeEvent(bytes: Uint8Array): Omit<LiveEvent, 'rows' | 'bytes'> {
  const event = { kind: 'ACK' as EventKind, subscriptionId: '', lastSeq: 0n, code: '', message: '' };
  const r = new BinaryReader(bytes);
  while (r.pos < r.len) {
    const [field, wire] = r.tag();
    switch (field) {
      case 1:
        event.kind = EVENT_KINDS[r.int32()] ?? 'ERROR';
        break;
      case 2:
        event.subscriptionId = r.string();
        break;
      case 3:
        event.lastSeq = BigInt(r.int64());
        break;
      case 4:
        event.code = r.string();
        break;
      case 5:
        event.message = r.string();
        break;
      default:
        r.skip(wire as WireType);
    }
  }
  return event;
}

/** An open subscription: events arrive through `onEvent` until it ends or `close()`. */
export interface LiveHandle {
  close(): void;
}

/**
 * Opens `SUBSCRIBE TO ...` over the WebSocket. Each binary message is a u32 length, that many
 * bytes of SubscriptionEvent, then one Arrow IPC message (the schema first, then batches).
 */
export function subscribe(
  sql: string,
  onEvent: (e: LiveEvent) => void,
  onEnd: (why: string) => void,
): LiveHandle {
  const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
  const ws = new WebSocket(`${scheme}://${location.host}/v1/subscriptions`);
  ws.binaryType = 'arraybuffer';
  let schemaMessage: Uint8Array | null = null;
  let ended = false;
  const end = (why: string) => {
    if (!ended) {
      ended = true;
      onEnd(why);
    }
  };
  ws.onopen = () => {
    ws.send(`Bearer ${session.token ?? ''}`);
    ws.send(sql);
  };
  ws.onmessage = (m) => {
    if (!(m.data instanceof ArrayBuffer)) return;
    const all = new Uint8Array(m.data);
    const n = new DataView(m.data).getUint32(0, true);
    const ipc = all.subarray(4 + n);
    if (n === 0) {
      schemaMessage = ipc.slice();
      return;
    }
    const event = decodeEvent(all.subarray(4, 4 + n));
    let rows: Table | null = null;
    if (ipc.length > 0 && schemaMessage) {
      const stream = new Uint8Array(schemaMessage.length + ipc.length);
      stream.set(schemaMessage, 0);
      stream.set(ipc, schemaMessage.length);
      rows = tableFromIPC(stream);
    }
    onEvent({ ...event, rows, bytes: all.length });
    if (event.kind === 'CLOSED' || event.kind === 'ERROR') end(`${event.kind} ${event.code}`);
  };
  ws.onerror = () => end('the connection failed');
  ws.onclose = () => end('closed');
  return {
    close() {
      ended = true;
      ws.close();
    },
  };
}
