import { execFileSync } from 'node:child_process';
import { mkdir, rm, stat, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startHttpServer } from '../fixtures/http-server.js';
import { LmStudioDouble } from '../fixtures/lmstudio-double.js';
import { cleanupsAfterEach } from '../helpers/cleanup.js';
import { connectInMemory, jobIdOf, makeTempDir, testConfig, textOf, type Connected } from '../helpers/client.js';
import { collectAll, e2eWorkers, scriptConfig } from '../helpers/scripts.js';

/** Large batches as JSONL files the server reads itself: inputs_file, prompts_file, items_file, requests_file. */

let conn: Connected;
let root: string;
let outside: string;

const cleanups = cleanupsAfterEach();

beforeAll(async () => {
  root = await makeTempDir('monitor-inputs-file-');
  outside = await makeTempDir('monitor-inputs-outside-');
  const config = await scriptConfig((c) => {
    c.workersDirs = [...c.workersDirs, e2eWorkers];
    c.allowedRoots = [root];
    c.script.maxConcurrency = 8;
    c.script.defaultConcurrency = 2;
  });
  conn = await connectInMemory(config, { env: { PATH: process.env.PATH, HOME: process.env.HOME } });
});

afterAll(async () => {
  await conn.close();
  await rm(root, { recursive: true, force: true });
  await rm(outside, { recursive: true, force: true });
});

async function jsonl(name: string, lines: readonly unknown[], dir = root): Promise<string> {
  const file = path.join(dir, name);
  await writeFile(file, lines.map((line) => (typeof line === 'string' ? line : JSON.stringify(line))).join('\n'));
  return file;
}

async function jobCount(c: Connected = conn): Promise<number> {
  return ((await c.call('list_jobs', { limit: 200 })).structuredContent as { total: number }).total;
}

/** Waits (collect_results waits on the job; failed results only, to keep replies small) until the job is done. */
async function finished(
  jobId: string,
  timeoutMs = 240_000,
): Promise<{ state: string; counts: Record<string, number> }> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const reply = await conn.call('collect_results', {
      job_ids: [jobId],
      wait_seconds: 20,
      filter: 'failed',
      budget_tokens: 200,
    });
    const job = (reply.structuredContent as { jobs: Array<{ state: string; counts: Record<string, number> }> }).jobs[0];
    if (job && job.state !== 'queued' && job.state !== 'running') return job;
    if (Date.now() > deadline) throw new Error(`job ${jobId} not done after ${timeoutMs} ms: ${JSON.stringify(job)}`);
  }
}

/** The isError text of a call that must fail, after checking it left no job behind. */
async function refused(args: Record<string, unknown>, tool = 'run_script_batch', c: Connected = conn): Promise<string> {
  const before = await jobCount(c);
  const reply = await c.call(tool, args);
  expect(reply.isError, textOf(reply)).toBe(true);
  expect(await jobCount(c)).toBe(before);
  return textOf(reply);
}

describe('run_script_batch with inputs_file', () => {
  it('reads one task per line (BOM, CRLF and blank lines tolerated), resolved against the project folder', async () => {
    await writeFile(
      path.join(root, 'three.jsonl'),
      '\uFEFF{"args": ["a"]}\r\n\r\n{"stdin": "hi\\u0000there"}\n  \n{}\n',
    );
    const reply = await conn.call('run_script_batch', { worker: 'echo.py', inputs_file: 'three.jsonl' });
    expect(reply.isError, textOf(reply)).toBeFalsy();
    const { results } = await collectAll(conn, jobIdOf(reply));
    expect(results.map((r) => [r.index, r.state])).toEqual([
      [0, 'succeeded'],
      [1, 'succeeded'],
      [2, 'succeeded'],
    ]);
    expect(results[0]?.value?.json).toMatchObject({ args: ['a'] });
    expect(results[1]?.value?.json).toMatchObject({ stdin: 'hi\u0000there' });
    expect(results[2]?.value?.json).toMatchObject({ args: [] });
  });

  // 1,000 tasks: about 1 s unloaded (the bench's 805 tasks/s), half a minute on a loaded 2-core machine.
  it('runs a job of 1,000 tasks from a file', async () => {
    const file = await jsonl(
      'thousand.jsonl',
      Array.from({ length: 1000 }, () => ({})),
    );
    const reply = await conn.call('run_script_batch', { worker: 'noop.sh', inputs_file: file, concurrency: 8 });
    expect(reply.isError, textOf(reply)).toBeFalsy();
    expect(reply.structuredContent).toMatchObject({ counts: { total: 1000 } });
    const job = await finished(jobIdOf(reply));
    expect(job).toMatchObject({ state: 'succeeded', counts: { total: 1000, succeeded: 1000 } });
  }, 300_000);

  it('plans 10,000 tasks from a 12 MB file (the inline maximum), and refuses one more', async () => {
    const pad = 'p'.repeat(1200);
    const lines = Array.from({ length: 10_000 }, (_, i) => ({ args: [String(i), pad] }));
    const file = await jsonl('twelve-mb.jsonl', lines);
    const reply = await conn.call('run_script_batch', { worker: 'noop.sh', inputs_file: file, concurrency: 1 });
    expect(reply.isError, textOf(reply)).toBeFalsy();
    const jobId = jobIdOf(reply);
    expect((await conn.call('cancel_job', { job_id: jobId })).isError).toBeFalsy();
    expect(reply.structuredContent).toMatchObject({ counts: { total: 10_000 } });
    const { size } = await stat(file);
    expect(size).toBeGreaterThan(12_000_000);

    const over = await jsonl(
      'ten-thousand-one.jsonl',
      Array.from({ length: 10_001 }, () => ({})),
    );
    expect(await refused({ worker: 'noop.sh', inputs_file: over })).toMatch(
      /INVALID_INPUT: inputs_file has more than 10000 tasks/,
    );
  }, 120_000);

  it('wants exactly one of inputs and inputs_file', async () => {
    const file = await jsonl('one.jsonl', [{}]);
    expect(await refused({ worker: 'noop.sh', inputs: [{}], inputs_file: file })).toMatch(
      /INVALID_INPUT: Give either inputs or inputs_file, not both/,
    );
    expect(await refused({ worker: 'noop.sh' })).toMatch(
      /INVALID_INPUT: Give the tasks: inputs \(a list\) or inputs_file/,
    );
  });

  it('refuses a file outside the allowed folders, also through a symlink, naming the folders', async () => {
    const elsewhere = await jsonl('elsewhere.jsonl', [{}], outside);
    const text = await refused({ worker: 'noop.sh', inputs_file: elsewhere });
    expect(text).toMatch(/PATH_OUTSIDE_ROOT: The inputs_file ".*elsewhere.jsonl" resolves outside the allowed folders/);
    expect(text).toContain(root);
    await symlink(elsewhere, path.join(root, 'link.jsonl'));
    expect(await refused({ worker: 'noop.sh', inputs_file: 'link.jsonl' })).toMatch(
      /PATH_OUTSIDE_ROOT: The inputs_file "link.jsonl" resolves outside/,
    );
  });

  it('refuses what is not a regular file, saying what it is', async () => {
    const fifo = path.join(root, 'pipe.jsonl');
    execFileSync('mkfifo', [fifo]);
    // Opening a FIFO waits for a writer: the server must not even try.
    expect(await refused({ worker: 'noop.sh', inputs_file: fifo })).toMatch(
      /INVALID_INPUT: inputs_file ".*pipe.jsonl" is a named pipe \(FIFO\), not a regular file/,
    );
    await mkdir(path.join(root, 'folder.jsonl'));
    expect(await refused({ worker: 'noop.sh', inputs_file: 'folder.jsonl' })).toMatch(
      /is a folder, not a regular file/,
    );
    expect(await refused({ worker: 'noop.sh', inputs_file: 'missing.jsonl' })).toMatch(
      /INVALID_INPUT: No such inputs_file: missing.jsonl/,
    );
  });

  it('names the line of a bad line, with a short escaped preview', async () => {
    const bad = await jsonl('bad.jsonl', [{}, '', `{"args": ["x"], \u0000 ${'y'.repeat(5000)}`, {}]);
    const text = await refused({ worker: 'noop.sh', inputs_file: bad });
    expect(text).toMatch(/INVALID_INPUT: inputs_file line 3 is not valid JSON/);
    expect(text).toContain('\\u0000');
    expect(text).not.toContain('\u0000');
    expect(text.length).toBeLessThan(1000);

    const misnamed = await jsonl('misnamed.jsonl', [{}, { argz: ['x'] }]);
    expect(await refused({ worker: 'noop.sh', inputs_file: misnamed })).toMatch(
      /inputs_file line 2: unknown field "argz" \(did you mean "args"\?\)/,
    );
    const wrongType = await jsonl('wrong-type.jsonl', [{ args: 'x' }]);
    expect(await refused({ worker: 'noop.sh', inputs_file: wrongType })).toMatch(
      /inputs_file line 1: args: .*expected array/,
    );
    // The planner's own checks name the line too (blank lines make it differ from the index).
    const both = await jsonl('both.jsonl', [{}, '', { stdin: 'a', json: 1 }]);
    expect(await refused({ worker: 'noop.sh', inputs_file: both })).toMatch(
      /INVALID_INPUT: inputs_file line 3 has both stdin and json/,
    );
    await writeFile(path.join(root, 'latin1.jsonl'), Buffer.from('{}\n{"args": ["caf\xe9"]}\n', 'latin1'));
    expect(await refused({ worker: 'noop.sh', inputs_file: 'latin1.jsonl' })).toMatch(
      /inputs_file line 2 is not valid UTF-8/,
    );
    const blank = await jsonl('blank.jsonl', ['', '  ', '']);
    expect(await refused({ worker: 'noop.sh', inputs_file: blank })).toMatch(/has no tasks: every line is blank/);
  });

  it('refuses a line nested 50,000 deep with the 64-level error inline arguments get, naming the line', async () => {
    const deep = `{"json": ${'['.repeat(50_000)}${']'.repeat(50_000)}}`;
    // Brackets inside strings (escaped quotes too) are text, not nesting.
    const quoted = JSON.stringify({ json: { text: `\\" ${'['.repeat(500)}` } });
    const file = await jsonl('deep.jsonl', [{}, quoted, deep]);
    const text = await refused({ worker: 'noop.sh', inputs_file: file });
    expect(text).toMatch(/^INVALID_INPUT: inputs_file "[^"]*deep\.jsonl" line 3 nests deeper than 64 levels/);
    expect(text).toContain('deep.jsonl');
    expect(text).not.toMatch(/stack|INTERNAL/i);
    // Inline, the same depth gets the same kind of error.
    const inline = await refused({
      worker: 'noop.sh',
      inputs: [{ json: JSON.parse(`${'['.repeat(100)}${']'.repeat(100)}`) }],
    });
    expect(inline).toMatch(/nests deeper than 64 levels/);
  });

  it('refuses a line longer than the cap, naming the file, the line and the cap, without reading the rest', async () => {
    const file = path.join(root, 'long-line.jsonl');
    await writeFile(file, `{}\n{"stdin": "${'x'.repeat(17 * 1024 * 1024)}"}\n{}\n`);
    const text = await refused({ worker: 'noop.sh', inputs_file: file });
    expect(text).toMatch(/^INVALID_INPUT: inputs_file "[^"]*long-line\.jsonl" line 2 is longer than 16 MiB/);
    expect(text.length).toBeLessThan(1500);
  }, 30_000);
});

describe('lmstudio_complete with prompts_file and items_file', () => {
  async function connectLlm(): Promise<{ c: Connected; double: LmStudioDouble }> {
    const double = await LmStudioDouble.start();
    cleanups.push(() => double.close());
    const c = await connectInMemory(
      await testConfig((cfg) => {
        cfg.llm.endpoints = [
          {
            name: 'lmstudio',
            url: double.url,
            concurrency: 4,
            models: [],
            flavor: 'lmstudio',
            apiKeyEnv: 'LM_API_TOKEN',
          },
        ];
        cfg.allowedRoots = [root];
      }),
    );
    cleanups.push(() => c.close());
    return { c, double };
  }

  it('reads prompts, or template items, one per line', async () => {
    const { c, double } = await connectLlm();
    await jsonl('prompts.jsonl', [
      { id: 'first', prompt: 'One' },
      '',
      { messages: [{ role: 'user', content: 'Two' }] },
    ]);
    const prompts = await c.call('lmstudio_complete', { prompts_file: 'prompts.jsonl', max_tokens: 20 });
    expect(prompts.isError, textOf(prompts)).toBeFalsy();
    await jsonl('items.jsonl', [{ topic: 'auth', id: 'a' }, { topic: 'cache' }]);
    const items = await c.call('lmstudio_complete', {
      template: 'About {{topic}}',
      items_file: 'items.jsonl',
      max_tokens: 20,
    });
    expect(items.isError, textOf(items)).toBeFalsy();
    for (const reply of [prompts, items]) {
      const jobId = jobIdOf(reply);
      const deadline = Date.now() + 60_000;
      let state = '';
      while (state !== 'succeeded') {
        const page = await c.call('collect_results', { job_ids: [jobId], wait_seconds: 20 });
        state = (page.structuredContent as { jobs: Array<{ state: string }> }).jobs[0]?.state ?? '';
        if (Date.now() > deadline) throw new Error(`job ${jobId} is ${state}`);
      }
    }
    expect(double.chatRequests.map((r) => r.prompt).sort()).toEqual(['About auth', 'About cache', 'One', 'Two']);
  });

  it('refuses prompts and prompts_file together, and names a bad line', async () => {
    const { c } = await connectLlm();
    const file = await jsonl('one-prompt.jsonl', [{ prompt: 'x' }]);
    expect(await refused({ prompts: [{ prompt: 'y' }], prompts_file: file }, 'lmstudio_complete', c)).toMatch(
      /Give either prompts or prompts_file, not both/,
    );
    const bad = await jsonl('bad-prompts.jsonl', [{ prompt: 'x' }, { prompt: 'y', mesages: [] }]);
    expect(await refused({ prompts_file: bad }, 'lmstudio_complete', c)).toMatch(
      /prompts_file line 2: unknown field "mesages" \(did you mean "messages"\?\)/,
    );
  });
});

describe('http_batch with requests_file', () => {
  it('reads one request per line, and names a bad line', async () => {
    const server = await startHttpServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{"ok": true}');
    });
    cleanups.push(() => server.close());
    const c = await connectInMemory(
      await testConfig((cfg) => {
        cfg.http.allowHosts = [server.hostEntry];
        cfg.http.allowPrivateAddresses = true;
        cfg.allowedRoots = [root];
      }),
    );
    cleanups.push(() => c.close());
    await jsonl('requests.jsonl', [{ url: '/a' }, '', { url: '/b', json: { x: 1 } }]);
    const reply = await c.call('http_batch', {
      base_url: server.origin,
      requests_file: 'requests.jsonl',
      wait_seconds: 30,
    });
    expect(reply.isError, textOf(reply)).toBeFalsy();
    expect(reply.structuredContent).toMatchObject({ done: true });
    expect(server.requests.map((r) => `${r.method} ${r.url}`).sort()).toEqual(['GET /a', 'POST /b']);

    // The planner's error for requests[1] is told as line 3 (the blank line is skipped).
    await jsonl('bad-requests.jsonl', [{ url: '/a' }, '', { url: '/b', json: {}, body: 'x' }]);
    expect(await refused({ base_url: server.origin, requests_file: 'bad-requests.jsonl' }, 'http_batch', c)).toMatch(
      /INVALID_INPUT: requests_file line 3: Give either json or body/,
    );
    expect(await refused({ base_url: server.origin }, 'http_batch', c)).toMatch(
      /Give the tasks: requests \(a list\) or requests_file/,
    );
  });
});
