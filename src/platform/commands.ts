import { execFileSync, spawn } from 'node:child_process';
import type { SystemCommands } from './types.js';

/** System tools run for real: no shell, no console window, bounded in time. */
export const systemCommands: SystemCommands = {
  runSync(file, args, timeoutMs) {
    try {
      return execFileSync(file, args, {
        encoding: 'utf8',
        timeout: timeoutMs,
        windowsHide: true,
        stdio: ['ignore', 'pipe', 'ignore'],
      });
    } catch {
      return undefined;
    }
  },
  startDetached(file, args) {
    try {
      const child = spawn(file, args, { stdio: 'ignore', windowsHide: true, detached: false });
      child.on('error', () => undefined);
      child.unref();
    } catch {
      // A tree kill that cannot start leaves the caller's forced kill and clean-up to act.
    }
  },
};
