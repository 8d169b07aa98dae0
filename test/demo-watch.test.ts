import { mkdir, rm, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { cliCommand, commandLine, keptLines, watchLines } from '../src/demo-watch.js';
import { LINUX, platformFor } from '../src/platform/index.js';
import { makeTempDir, repoRoot } from './helpers/client.js';

const cliPath = path.join(repoRoot, 'dist', 'src', 'cli.js');
const dirs: string[] = [];
afterAll(async () => {
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
});

describe("the demo's commands, as a person copies them", () => {
  it('names monitor-mcp only when PATH has this very cli.js, else node and the path from where the demo ran', async () => {
    const bin = await makeTempDir('monitor-bin-');
    dirs.push(bin);
    const shell = { nodePath: process.execPath, cliPath, cwd: repoRoot, searchPath: bin, platform: LINUX };
    // Neither on this PATH: node by its full path, cli.js relative to the package folder.
    expect(await cliCommand(shell)).toEqual([process.execPath, path.join('dist', 'src', 'cli.js')]);
    // Started elsewhere: cli.js by its full path.
    expect(await cliCommand({ ...shell, cwd: bin })).toEqual([process.execPath, cliPath]);
    await symlink(process.execPath, path.join(bin, 'node'));
    expect((await cliCommand(shell))[0]).toBe('node');
    // Another package's monitor-mcp on PATH is not this one.
    const other = path.join(bin, 'other');
    await mkdir(other);
    await writeFile(path.join(other, 'monitor-mcp'), '#!/bin/sh\n', { mode: 0o755 });
    expect(await cliCommand({ ...shell, searchPath: `${other}:${bin}` })).toEqual([
      'node',
      path.join('dist', 'src', 'cli.js'),
    ]);
    // A global install from a folder links its cli.js (made executable): then the bare name.
    const installed = path.join(bin, 'package', 'cli.js');
    await mkdir(path.dirname(installed));
    await writeFile(installed, '#!/usr/bin/env node\n', { mode: 0o755 });
    await symlink(installed, path.join(bin, 'monitor-mcp'));
    expect(await cliCommand({ ...shell, cliPath: installed })).toEqual(['monitor-mcp']);
    expect(await cliCommand(shell)).toEqual(['node', path.join('dist', 'src', 'cli.js')]);
  });

  it('quotes a word only where a shell needs it', () => {
    expect(commandLine(['node', 'dist/src/cli.js', 'jobs', '--state-dir', '/tmp/monitor-demo-a_B1'])).toBe(
      'node dist/src/cli.js jobs --state-dir /tmp/monitor-demo-a_B1',
    );
    expect(commandLine(['node', 'C:\\Users\\Jo Do\\Temp\\x'])).toBe('node "C:\\Users\\Jo Do\\Temp\\x"');
    expect(commandLine(['a$b"c'])).toBe('"a\\$b\\"c"');
  });

  it('prints the dashboard and jobs commands for the state directory, and how to remove it on each system', () => {
    const cli = ['node', 'dist/src/cli.js'];
    const watch = watchLines(cli, '/tmp/d');
    expect(watch).toContain('\n  node dist/src/cli.js dashboard --state-dir /tmp/d\n');
    expect(watch).toContain('\n  node dist/src/cli.js jobs --watch --state-dir /tmp/d\n');
    expect(keptLines(cli, '/tmp/d', LINUX)).toMatch(
      /node dist\/src\/cli\.js jobs --state-dir \/tmp\/d lists them.*rm -rf \/tmp\/d\n$/,
    );
    expect(keptLines(cli, 'C:\\T\\d', platformFor('win32', {}))).toMatch(/rmdir \/s \/q C:\\T\\d\n$/);
  });
});
