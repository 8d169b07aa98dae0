import { terminalValue } from './terminal.js';

/** stdout belongs to the MCP protocol, so every log line goes to an injected stderr-like sink. */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

export interface Logger {
  debug(message: string): void;
  info(message: string): void;
  warn(message: string): void;
  error(message: string): void;
}

const order: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export function createLogger(write: (line: string) => void, level: LogLevel = 'info'): Logger {
  const emit = (at: LogLevel, message: string): void => {
    // Messages carry labels, paths and worker output: one line each, nothing that steers a terminal.
    if (order[at] >= order[level]) write(`[monitor-mcp] ${at}: ${terminalValue(message)}\n`);
  };
  return {
    debug: (m) => emit('debug', m),
    info: (m) => emit('info', m),
    warn: (m) => emit('warn', m),
    error: (m) => emit('error', m),
  };
}

export const silentLogger: Logger = { debug() {}, info() {}, warn() {}, error() {} };
