import { execFile } from 'node:child_process';
import { readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { startHttpServer, streamBytes } from '../fixtures/http-server.js';
import { jobIdOf, makeTempDir, repoRoot } from '../helpers/client.js';
import { type BenchRow, type BenchServer, startServer, waitDone } from './common.js';

const MB = 1024 * 1024;
const run = promisify(execFile);
const fixtures = path.join(repoRoot, 'test', 'fixtures', 'workers');

async function statusKb(pid: number, field: 'VmRSS' | 'VmHWM'): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  return Number(new RegExp(`${field}:\\s+(\\d+)`).exec(status)?.[1] ?? 'NaN');
}

/**
 * How much the server's peak RSS rises over its RSS before `work`: the kernel's high-water mark
 * (VmHWM), reset first through clear_refs, so no sampling can miss the peak.
 */
async function peakGrowthMb(server: BenchServer, work: () => Promise<void>): Promise<number> {
  await writeFile(`/proc/${server.pid}/clear_refs`, '5');
  const before = await statusKb(server.pid, 'VmRSS');
  await work();
  return ((await statusKb(server.pid, 'VmHWM')) - before) / 1024;
}

/**
 * Large outputs must stream through the server, not sit in its memory: a 50 MB HTTP body capped at
 * 20 MB, and 10 MB of a worker's stdout, each through the built server over stdio.
 */
export async function benchMemory(): Promise<BenchRow[]> {
  const rows: BenchRow[] = [];
  const http = await startHttpServer((req, res) => {
    void streamBytes(res, req.url === '/big' ? 50 * MB : 1000);
  });
  const stateDir = await makeTempDir('monitor-bench-mem-');
  const configFile = path.join(stateDir, 'config.json');
  await writeFile(
    configFile,
    JSON.stringify({
      http: {
        maxResponseBytes: 20 * MB,
        maxInlineBytes: 4096,
        allowHosts: [http.hostEntry],
        allowPrivateAddresses: true,
      },
    }),
  );
  const server = await startServer([
    '--config',
    configFile,
    '--state-dir',
    path.join(stateDir, 'state'),
    '--workers-dir',
    fixtures,
  ]);
  try {
    // A first small job of each kind, so what is measured is the big output, not loading code.
    await waitDone(
      server,
      jobIdOf(await server.call('run_script_batch', { worker: 'big_output.py', inputs: [{ args: ['100'] }] })),
    );
    await waitDone(server, jobIdOf(await server.call('http_batch', { requests: [{ url: `${http.origin}/small` }] })));
    const httpGrowth = await peakGrowthMb(server, async () => {
      await waitDone(server, jobIdOf(await server.call('http_batch', { requests: [{ url: `${http.origin}/big` }] })));
    });
    // Node frees the socket's buffers lazily: even a bare client's RSS rises by several times the
    // body while it streams. That floor, measured in a process of its own, is the baseline.
    const floorScript = path.join(path.dirname(fileURLToPath(import.meta.url)), 'http-floor.js');
    const { stdout } = await run(process.execPath, [
      floorScript,
      `${http.origin}/big`,
      String(20 * MB),
      path.join(stateDir, 'floor.body'),
    ]);
    const floor = Number(stdout.trim());
    rows.push({
      name: '50 MB HTTP body, capped at 20 MB: bare undici client, peak RSS growth',
      value: `${floor.toFixed(1)} MB`,
    });
    rows.push({
      name: '50 MB HTTP body, capped at 20 MB: server peak RSS growth',
      value: `${httpGrowth.toFixed(1)} MB`,
      goal: 'at most the bare client + 10 MB',
      ok: httpGrowth <= floor + 10,
    });
    const scriptGrowth = await peakGrowthMb(server, async () => {
      await waitDone(
        server,
        jobIdOf(
          await server.call('run_script_batch', {
            worker: 'big_output.py',
            inputs: [{ args: [String(10 * MB), '5000', '0.5'] }],
          }),
        ),
      );
    });
    rows.push({
      name: '10 MB of worker stdout: server peak RSS growth',
      value: `${scriptGrowth.toFixed(1)} MB`,
      goal: 'under 5 MB (holding it: 10 MB)',
      ok: scriptGrowth < 5,
    });
  } finally {
    await server.close();
    await http.close();
    await rm(stateDir, { recursive: true, force: true });
  }
  return rows;
}
