import { Server } from '@modelcontextprotocol/sdk/server/index.js';
import type { Transport } from '@modelcontextprotocol/sdk/shared/transport.js';
import {
  ClientRequestSchema,
  ErrorCode,
  type JSONRPCMessage,
  type MessageExtraInfo,
} from '@modelcontextprotocol/sdk/types.js';

/**
 * The SDK parses a request's params inside its dispatch and answers a mismatch (`arguments: []`,
 * a numeric prompt name) as -32603 with zod's whole issue list. This checks the same schemas
 * first and answers -32602 (InvalidParams) with one short line saying what was wrong.
 */

interface Issue {
  code: string;
  path: PropertyKey[];
  message: string;
  expected?: unknown;
  values?: unknown;
}
interface Checker {
  safeParse(value: unknown): { success: true } | { success: false; error: { issues: readonly Issue[] } };
}

/** Each client request's schema by method, as the SDK's handlers parse it. */
const SCHEMAS: ReadonlyMap<string, Checker> = new Map(
  ClientRequestSchema.options.map((schema) => [schema.shape.method.value as string, schema as unknown as Checker]),
);

const NAMES: Record<string, string> = { record: 'an object', object: 'an object', array: 'an array' };

function kindOf(value: unknown): string {
  if (value === null) return 'null';
  if (value === undefined) return 'nothing';
  if (Array.isArray(value)) return 'an array';
  return typeof value === 'object' ? 'an object' : `a ${typeof value}`;
}

function valueAt(root: unknown, path: readonly PropertyKey[]): unknown {
  let value = root;
  for (const key of path) {
    if (typeof value !== 'object' || value === null) return undefined;
    value = (value as Record<PropertyKey, unknown>)[key];
  }
  return value;
}

/** One issue as "arguments must be an object (got an array)". */
function describe(issue: Issue, message: unknown): string {
  const where =
    issue.path
      .slice(issue.path[0] === 'params' ? 1 : 0)
      .map(String)
      .join('.') || 'params';
  if (issue.code === 'invalid_type' && typeof issue.expected === 'string') {
    const expected = NAMES[issue.expected] ?? `a ${issue.expected}`;
    return `${where} must be ${expected} (got ${kindOf(valueAt(message, issue.path))})`;
  }
  if (issue.code === 'invalid_value' && Array.isArray(issue.values))
    return `${where} must be one of ${issue.values.map((v) => JSON.stringify(v)).join(', ')}`;
  return `${where}: ${issue.message}`;
}

/** The error answer for a request whose params do not fit its method's schema, else undefined. */
export function paramsRefusal(message: JSONRPCMessage): JSONRPCMessage | undefined {
  if (!('method' in message) || !('id' in message)) return undefined;
  const checked = SCHEMAS.get(message.method)?.safeParse(message);
  if (checked === undefined || checked.success) return undefined;
  const issues = checked.error.issues.slice(0, 3).map((issue) => describe(issue, message));
  const more = checked.error.issues.length > 3 ? `; and ${checked.error.issues.length - 3} more` : '';
  return {
    jsonrpc: '2.0',
    id: message.id,
    error: {
      code: ErrorCode.InvalidParams,
      message: `Invalid params for ${message.method}: ${issues.join('; ')}${more}.`,
    },
  };
}

/** `inner` with every request's params checked before the server sees it; a refused one is answered here. */
class ParamsCheckedTransport implements Transport {
  onclose?: (() => void) | undefined;
  onerror?: ((error: Error) => void) | undefined;
  onmessage?: (<T extends JSONRPCMessage>(message: T, extra?: MessageExtraInfo) => void) | undefined;

  constructor(private readonly inner: Transport) {
    // Handlers set on `inner` before connecting (the CLI's shutdown on stdin's end) are kept: the SDK chains onto ours.
    this.onclose = inner.onclose;
    this.onerror = inner.onerror;
    inner.onclose = () => this.onclose?.();
    inner.onerror = (error) => this.onerror?.(error);
    inner.onmessage = (message, extra) => {
      const refusal = paramsRefusal(message);
      if (refusal === undefined) this.onmessage?.(message, extra);
      else this.inner.send(refusal).catch((error: unknown) => this.onerror?.(error as Error));
    };
  }

  get sessionId(): string | undefined {
    return this.inner.sessionId;
  }

  start(): Promise<void> {
    return this.inner.start();
  }

  send(...args: Parameters<Transport['send']>): Promise<void> {
    return this.inner.send(...args);
  }

  close(): Promise<void> {
    return this.inner.close();
  }

  setProtocolVersion(version: string): void {
    this.inner.setProtocolVersion?.(version);
  }
}

/** The SDK's Server, answering requests with wrongly typed params -32602 with a short message. */
export class ParamsCheckingServer extends Server {
  override connect(transport: Transport): Promise<void> {
    return super.connect(new ParamsCheckedTransport(transport));
  }
}
