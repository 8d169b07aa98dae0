import { rm } from 'node:fs/promises';
import path from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { afterAll, describe, expect, it } from 'vitest';
import { makeTempDir, repoRoot } from '../helpers/client.js';
import { modelView, type SuggestedCall, suggestedCalls } from '../helpers/model-view.js';

const cli = path.join(repoRoot, 'dist', 'src', 'cli.js');
const fixtures = path.join(repoRoot, 'test', 'fixtures', 'e2e-workers');
const dirs: string[] = [];
afterAll(async () => {
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
});

/**
 * A client that behaves like Claude Code: the "model" below gets only what Claude Code forwards
 * (modelView) and decides every next call from that alone — ids, cursors and calls come out of
 * the replies it received, never from anywhere else.
 */
async function claudeCodeLike(
  stateDir: string,
): Promise<{ see(tool: string, args: Record<string, unknown>): Promise<string>; pid: number; close(): Promise<void> }> {
  const transport = new StdioClientTransport({
    command: process.execPath,
    args: [cli, '--state-dir', stateDir, '--workers-dir', fixtures, '--root', repoRoot, '--log-level', 'warn'],
    cwd: repoRoot,
    stderr: 'pipe',
  });
  const client = new Client({ name: 'claude-code-like', version: '0' });
  await client.connect(transport);
  return {
    see: async (tool, args) =>
      modelView(
        (await client.callTool({ name: tool, arguments: args }, undefined, { timeout: 60_000 })) as CallToolResult,
      ),
    pid: transport.pid ?? 0,
    close: () => client.close(),
  };
}

interface Page {
  done: boolean;
  remaining: number;
  next: string;
  results: Array<{ id?: string; state: string; value?: { json?: { label?: string } } }>;
}

function only(calls: SuggestedCall[], tool: string): SuggestedCall {
  const found = calls.find((c) => c.tool === tool);
  if (!found) throw new Error(`no ${tool} call in: ${JSON.stringify(calls)}`);
  return found;
}

describe("what Claude Code's model receives", () => {
  it(
    'is enough to run a whole workflow: list_workers → dispatch → collect page by page → resume after a crash → collect to the end',
    { timeout: 300_000 },
    async () => {
      const stateDir = await makeTempDir('monitor-model-view-');
      dirs.push(stateDir);
      let session = await claudeCodeLike(stateDir);
      try {
        const workers = JSON.parse(await session.see('list_workers', {})) as {
          usage: string;
          workers: Array<{ name: string; input: { args?: string } }>;
        };
        expect(workers.usage).toMatch(/run_script_batch \{"worker": NAME, "inputs": \[/);
        const emit = workers.workers.find((w) => w.name === 'emit.py');
        expect(emit?.input.args).toMatch(/label, exit_code, size, sleep_seconds/);

        // 40 quick tasks with 1 KB of output each (more than one default page), 3 slow ones.
        const quick = Array.from({ length: 40 }, (_, i) => ({ args: [`q${i}`, '0', '1000'] }));
        // The slow ones outlast any paging on a loaded machine (600 s, ended by the kill), and take 1 s once resumed.
        const slow = Array.from({ length: 3 }, (_, i) => ({ args: [`s${i}`, '0', '0', '1', '600'] }));
        const dispatched = JSON.parse(
          await session.see('run_script_batch', { worker: emit?.name, inputs: [...quick, ...slow], concurrency: 8 }),
        ) as { job_id: string; next: string };
        expect(dispatched.next).toMatch(/collect_results with/);

        const labels = new Set<string>();
        const shown: string[] = [];
        let call = only(suggestedCalls(dispatched.next), 'collect_results');
        let pages = 0;
        const deadline = Date.now() + 150_000;
        // Page through the quick results while the slow tasks still run (short waits: the model's choice).
        while (labels.size < 40 && Date.now() < deadline) {
          const page = JSON.parse(await session.see(call.tool, { ...call.args, wait_seconds: 2 })) as Page;
          pages++;
          for (const r of page.results) {
            labels.add(r.value?.json?.label ?? '?');
            shown.push(`${r.id ?? '?'}=${r.state}`);
          }
          if (page.remaining > 0) expect(page.next).toMatch(/more result\(s\) are ready/);
          if (labels.size >= 40) break;
          expect(page.done, `the slow tasks still run (shown so far: ${shown.join(', ')})`).toBe(false);
          call = only(suggestedCalls(page.next), 'collect_results');
        }
        expect(labels.size, `shown: ${shown.join(', ')}`).toBe(40);
        expect(pages).toBeGreaterThanOrEqual(2);

        // The server dies while the slow tasks run; the client starts it again.
        process.kill(session.pid, 'SIGKILL');
        await session.close().catch(() => undefined);
        session = await claudeCodeLike(stateDir);
        const listed = JSON.parse(await session.see('list_jobs', {})) as {
          jobs: Array<{ state: string; next?: string }>;
          next: string;
        };
        expect(listed.jobs[0]?.state).toBe('interrupted');
        const resume = only(suggestedCalls(listed.jobs[0]?.next ?? ''), 'resume_job');
        expect(only(suggestedCalls(listed.next), 'resume_job')).toEqual(resume);
        const resumed = JSON.parse(await session.see(resume.tool, resume.args)) as { requeued: number; next: string };
        expect(resumed.requeued).toBe(3);

        call = only(suggestedCalls(resumed.next), 'collect_results');
        const ids = new Set<string>();
        for (let i = 0; i < 20; i++) {
          const page = JSON.parse(await session.see(call.tool, call.args)) as Page;
          for (const r of page.results) {
            labels.add(r.value?.json?.label ?? '?');
            ids.add(r.id ?? '?');
          }
          if (page.done && page.remaining === 0) {
            expect(page.next).toBe('Every result has been shown; the job(s) are finished.');
            break;
          }
          call = only(suggestedCalls(page.next), 'collect_results');
        }
        expect([...labels].sort()).toEqual([...quick, ...slow].map((input) => input.args[0]).sort());
        // Each result names the input it came from.
        expect(ids).toContain('s0 0 0 1 600');
      } finally {
        await session.close();
      }
    },
  );

  it('gets CODE, message and next step for bad arguments, an unknown one named with what was meant', async () => {
    const stateDir = await makeTempDir('monitor-model-view-');
    dirs.push(stateDir);
    const session = await claudeCodeLike(stateDir);
    try {
      const typo = await session.see('run_script_batch', { worker: 'emit.py', inputs: [{ args: ['a'] }], timeout: 1 });
      expect(typo).toMatch(
        /^INVALID_INPUT: Invalid arguments for run_script_batch: unknown argument "timeout" \(did you mean "timeout_seconds"\?\)\.\nNext: /,
      );
      const wrongType = await session.see('run_script_batch', { worker: 'emit.py', inputs: [{ args: 'a' }] });
      expect(wrongType).toMatch(
        /^INVALID_INPUT: Invalid arguments for run_script_batch: inputs\[0\]\.args: Invalid input: expected array, received string\.\nNext: .*inputs: /,
      );
      const empty = await session.see('run_script_batch', { worker: 'emit.py', inputs: [] });
      expect(empty).toMatch(/^INVALID_INPUT: .*inputs is empty/);
      // Nothing was submitted by any of them.
      expect((JSON.parse(await session.see('list_jobs', {})) as { total: number }).total).toBe(0);
    } finally {
      await session.close();
    }
  });
});
