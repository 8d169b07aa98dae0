import { systemCommands } from './commands.js';
import { posixPlatform } from './posix.js';
import type { Platform, SystemCommands } from './types.js';
import { win32Platform } from './win32.js';

export type { CommandLine, Folders, OsName, Platform, ProcessState, SystemCommands } from './types.js';

/** The platform for `os` (`process.platform`); another Unix gets Linux's folders and macOS's `ps`, without /proc. */
export function platformFor(
  os: string,
  env: Readonly<Record<string, string | undefined>> = {},
  commands: SystemCommands = systemCommands,
): Platform {
  if (os === 'win32') return win32Platform(env, commands);
  if (os === 'darwin' || os === 'linux') return posixPlatform(os, commands);
  return posixPlatform('linux', commands, false);
}

/** Linux, the platform tests run on and what pure code defaults to. */
export const LINUX: Platform = platformFor('linux');
