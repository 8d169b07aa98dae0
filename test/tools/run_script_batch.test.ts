import { readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectInMemory, makeTempDir, repoRoot, textOf, type Connected } from '../helpers/client.js';
import {
  alive,
  collectAll,
  eventually,
  killQuietly,
  readPids,
  scriptConfig,
  submitScripts,
  until,
} from '../helpers/scripts.js';

let conn: Connected;
let tmp: string;
let userWorkers: string;

beforeAll(async () => {
  tmp = await makeTempDir('monitor-rsb-');
  userWorkers = await makeTempDir('monitor-user-workers-');
  await writeFile(path.join(tmp, 'secret.py'), 'print("should never run")\n');
  await symlink(path.join(tmp, 'secret.py'), path.join(userWorkers, 'escape.py'));
  const config = await scriptConfig((c) => {
    c.workersDirs = [...c.workersDirs, userWorkers];
    c.allowedRoots = [repoRoot, tmp];
    c.script.maxConcurrency = 8;
    c.script.defaultConcurrency = 2;
    c.allowEnv = ['MYTOOL_*', 'EXACT_NAME'];
  });
  conn = await connectInMemory(config, { env: { PATH: process.env.PATH, HOME: process.env.HOME } });
});

afterAll(async () => {
  await conn.close();
  await rm(tmp, { recursive: true, force: true });
  await rm(userWorkers, { recursive: true, force: true });
});

async function jobCount(): Promise<number> {
  const reply = await conn.call('list_jobs', { limit: 200 });
  return (reply.structuredContent as { total: number }).total;
}

describe('run_script_batch', () => {
  it('returns a job handle at once, and the results come through collect_results', async () => {
    const reply = await conn.call('run_script_batch', {
      worker: 'echo.py',
      inputs: [{ args: ['a'] }, { args: ['b'] }, {}],
      label: 'echo three',
    });
    expect(reply.isError).toBeFalsy();
    expect(textOf(reply)).toContain('collect_results');
    const structured = reply.structuredContent as { job_id: string; kind: string; concurrency: number; label: string };
    expect(structured).toMatchObject({ kind: 'script', concurrency: 2, label: 'echo three' });
    const { results, job } = await collectAll(conn, structured.job_id);
    expect(job).toMatchObject({ state: 'succeeded', label: 'echo three' });
    expect(results.map((r) => [r.index, r.state, (r.value?.json as { args: string[] }).args])).toEqual([
      [0, 'succeeded', ['a']],
      [1, 'succeeded', ['b']],
      [2, 'succeeded', []],
    ]);
    expect((results[1]?.value?.json as { env: Record<string, string> }).env).toMatchObject({
      MONITOR_JOB_ID: structured.job_id,
      MONITOR_TASK_INDEX: '1',
      MONITOR_STDIN_FORMAT: 'none',
    });
  });

  it('with wait_seconds answers with the results inline', async () => {
    const reply = await conn.call('run_script_batch', {
      worker: 'echo.py',
      inputs: [{ stdin: 'hi there' }, { json: { files: ['x.ts'] } }],
      wait_seconds: 30,
    });
    expect(reply.isError).toBeFalsy();
    const structured = reply.structuredContent as {
      job_id: string;
      done: boolean;
      results: Array<{ index: number; value: { json: { stdin: string; env: Record<string, string> } } }>;
    };
    expect(structured.done).toBe(true);
    const byIndex = new Map(structured.results.map((r) => [r.index, r.value.json]));
    expect(byIndex.get(0)).toMatchObject({ stdin: 'hi there', env: { MONITOR_STDIN_FORMAT: 'text' } });
    expect(byIndex.get(1)).toMatchObject({ stdin: '{"files":["x.ts"]}\n', env: { MONITOR_STDIN_FORMAT: 'json' } });
  });

  it('passes shell metacharacters in args literally', async () => {
    const marker = path.join(tmp, 'pwned');
    const args = [
      `$(touch ${marker})`,
      `; touch ${marker}`,
      `\`touch ${marker}\``,
      '|',
      '&&',
      '*',
      '~',
      '$HOME',
      "it's",
      '"x"',
      '>out.txt',
    ];
    const jobId = await submitScripts(conn, { worker: 'echo.py', inputs: [{ args }], cwd: tmp });
    const { results } = await collectAll(conn, jobId);
    expect((results[0]?.value?.json as { args: string[] }).args).toEqual(args);
    await expect(readFile(marker)).rejects.toThrow();
    await expect(readFile(path.join(tmp, 'out.txt'))).rejects.toThrow();
  });

  it('runs in the given cwd with the env additions: harmless ones, those the worker declares, those the user allows', async () => {
    // echo.py declares FIXTURE_MODE ("# monitor: env: FIXTURE_MODE"); the user allowed MYTOOL_* and EXACT_NAME.
    const env = {
      FIXTURE_MODE: 'strict',
      LANG: 'C.UTF-8',
      LC_ALL: 'C.UTF-8',
      OMP_NUM_THREADS: '1',
      MYTOOL_LEVEL: '3',
      EXACT_NAME: 'x',
    };
    const jobId = await submitScripts(conn, { worker: 'echo.py', inputs: [{}], cwd: tmp, env });
    const { results } = await collectAll(conn, jobId);
    expect(results[0]?.value?.json).toMatchObject({ cwd: tmp, env: { FIXTURE_MODE: 'strict' } });
    // Declared by echo.py only: another worker may not have it.
    const refused = await conn.call('run_script_batch', {
      worker: 'fail.py',
      inputs: [{}],
      env: { FIXTURE_MODE: 'strict' },
    });
    expect(refused.isError).toBe(true);
    expect(textOf(refused)).toMatch(
      /^INVALID_INPUT: env cannot set FIXTURE_MODE: only variables that cannot change which code runs[\s\S]*Next: .*# monitor: env: NAME.*--allow-env NAME/,
    );
  });

  it('delivers NUL bytes on stdin intact (only args and env values cannot hold them)', async () => {
    const jobId = await submitScripts(conn, { worker: 'echo.py', inputs: [{ stdin: 'a\u0000b' }] });
    const { results } = await collectAll(conn, jobId);
    expect(results[0]).toMatchObject({ state: 'succeeded', value: { json: { stdin: 'a\u0000b' } } });
  });

  it('reports a failing task as NON_ZERO_EXIT with its output, next to succeeding ones', async () => {
    const jobId = await submitScripts(conn, {
      worker: 'fail.py',
      inputs: [{ args: ['0'] }, { args: ['4', 'bad input file'] }],
    });
    const { results, job } = await collectAll(conn, jobId);
    expect(job.state).toBe('failed');
    expect(results[0]).toMatchObject({ state: 'succeeded', value: { exit_code: 0 } });
    expect(results[1]).toMatchObject({
      state: 'failed',
      error: { code: 'NON_ZERO_EXIT', message: expect.stringContaining('exited with code 4: fatal: bad input file') },
      value: {
        exit_code: 4,
        text: 'partial output before failing',
        stderr_tail: expect.stringContaining('fatal: bad input file'),
      },
    });
  });

  it('resume_job runs failed tasks again as attempt 2', async () => {
    const failing = await submitScripts(conn, { worker: 'fail.py', inputs: [{ args: ['0'] }, { args: ['1'] }] });
    await collectAll(conn, failing);
    const resumed = await conn.call('resume_job', { job_id: failing, include_failed: true });
    expect(resumed.isError).toBeFalsy();
    const { results } = await collectAll(conn, failing);
    const attempts = results.filter((r) => r.index === 1);
    expect(attempts.at(-1)).toMatchObject({ state: 'failed', error: { code: 'NON_ZERO_EXIT' } });
    expect(attempts.at(-1)?.attempt).toBe(2);
  });

  it('keeps at most `concurrency` tasks running, and runs them in parallel', async () => {
    const log = path.join(tmp, 'overlap.log');
    const tasks = 6;
    const concurrency = 3;
    const seconds = 1;
    const started = Date.now();
    const jobId = await submitScripts(conn, {
      worker: 'record.py',
      inputs: Array.from({ length: tasks }, () => ({ args: [log, String(seconds)] })),
      concurrency,
    });
    const { results, job } = await collectAll(conn, jobId);
    const elapsed = (Date.now() - started) / 1000;
    expect(results.every((r) => r.state === 'succeeded')).toBe(true);
    const events = (await readFile(log, 'utf8'))
      .trim()
      .split('\n')
      .map((line) => {
        const [kind = '', , at = '0'] = line.split(' ');
        return { delta: kind === 'start' ? 1 : -1, at: Number(at) };
      })
      .sort((a, b) => a.at - b.at || a.delta - b.delta);
    expect(events).toHaveLength(tasks * 2);
    let running = 0;
    let peak = 0;
    for (const event of events) {
      running += event.delta;
      peak = Math.max(peak, running);
    }
    expect(peak).toBeLessThanOrEqual(concurrency);
    expect(peak).toBeGreaterThanOrEqual(2);
    expect(job.peak_running).toBeLessThanOrEqual(concurrency);
    // ceil(6/3) × 1 s = 2 s of sleeping at the least. (That they ran side by side is the peak
    // above; how fast is `npm run bench`'s business.)
    expect(elapsed).toBeGreaterThanOrEqual(Math.ceil(tasks / concurrency) * seconds * 0.95);
  });

  it('kills a task over timeout_seconds with its children (TIMEOUT)', async () => {
    const pidFile = path.join(tmp, 'timeout.pids');
    const jobId = await submitScripts(conn, {
      worker: 'stubborn.py',
      inputs: [{ args: [pidFile] }],
      timeout_seconds: 1,
    });
    const [parent = 0, child = 0] = await readPids(pidFile);
    try {
      const { results } = await collectAll(conn, jobId);
      expect(results[0]).toMatchObject({ state: 'failed', error: { code: 'TIMEOUT' }, value: { timed_out: true } });
      expect(await eventually(() => !alive(parent) && !alive(child), 5000)).toBe(true);
    } finally {
      killQuietly(parent);
      killQuietly(child);
    }
  });

  it('cancel_job kills running tasks with their children and drops queued ones', async () => {
    const pidFile = path.join(tmp, 'cancel.pids');
    const jobId = await submitScripts(conn, {
      worker: 'stubborn.py',
      inputs: [{ args: [pidFile] }, { args: [path.join(tmp, 'never.pids')] }],
      concurrency: 1,
    });
    const [parent = 0, child = 0] = await readPids(pidFile);
    try {
      expect(alive(parent) && alive(child)).toBe(true);
      const cancel = await conn.call('cancel_job', { job_id: jobId });
      expect(cancel.isError).toBeFalsy();
      const { results, job } = await collectAll(conn, jobId);
      expect(job.state).toBe('cancelled');
      expect(results.map((r) => r.state)).toEqual(['cancelled', 'cancelled']);
      expect(await eventually(() => !alive(parent) && !alive(child), 5000)).toBe(true);
      await expect(readFile(path.join(tmp, 'never.pids'))).rejects.toThrow();
    } finally {
      killQuietly(parent);
      killQuietly(child);
    }
  });

  it('runs allowed commands only', async () => {
    const allowed = await connectInMemory(
      await scriptConfig((c) => {
        c.allowCommands = ['echo'];
      }),
    );
    try {
      const jobId = await submitScripts(allowed, { command: 'echo', inputs: [{ args: ['hello', '$USER;', 'world'] }] });
      const { results } = await collectAll(allowed, jobId);
      expect(results[0]?.value).toMatchObject({ exit_code: 0, text: 'hello $USER; world' });

      const refused = await allowed.call('run_script_batch', { command: 'rm', inputs: [{ args: ['-rf', tmp] }] });
      expect(refused.isError).toBe(true);
      expect(textOf(refused)).toMatch(/^COMMAND_NOT_ALLOWED: .*"rm"[\s\S]*Next: Allowed commands: echo/);
    } finally {
      await allowed.close();
    }
  });
});

describe('run_script_batch with warm workers', () => {
  const warmWorkers = path.join(repoRoot, 'test', 'fixtures', 'warm-workers');
  let warmConn: Connected;

  beforeAll(async () => {
    warmConn = await connectInMemory(
      await scriptConfig((c) => {
        c.workersDirs = [...c.workersDirs, warmWorkers];
        c.allowCommands = ['echo'];
      }),
      { env: { PATH: process.env.PATH } },
    );
  });

  afterAll(async () => {
    await warmConn.close();
  });

  it('runs a warm worker warm by default, stores the choice with the job, and ends its processes when the job ends', async () => {
    const jobId = await submitScripts(warmConn, {
      worker: 'warm_probe.py',
      inputs: Array.from({ length: 8 }, () => ({ args: ['pid'] })),
      concurrency: 2,
    });
    expect(warmConn.app.engine.meta(jobId).options).toMatchObject({ warm: true });
    const { results, job } = await collectAll(warmConn, jobId);
    expect(job).toMatchObject({ state: 'succeeded' });
    const pids = new Set(results.map((r) => Number((r.value?.json as { pid: number }).pid)));
    expect(pids.size).toBeLessThanOrEqual(2);
    expect(new Set(results.map((r) => (r.value?.warm as { process: number }).process)).size).toBe(pids.size);
    try {
      await until(() => [...pids].every((pid) => !alive(pid)), "the job's warm processes to end with it", 20_000);
    } finally {
      for (const pid of pids) killQuietly(pid);
    }
  });

  it('runs one process per task with warm: false', async () => {
    const jobId = await submitScripts(warmConn, {
      worker: 'warm_probe.py',
      inputs: [{ args: ['echo'] }, { args: ['echo'] }],
      concurrency: 1,
      warm: false,
    });
    expect(warmConn.app.engine.meta(jobId).options).toMatchObject({ warm: false });
    const { results } = await collectAll(warmConn, jobId);
    expect(results.map((r) => r.value?.warm)).toEqual([undefined, undefined]);
    const [first, second] = results.map((r) => r.value?.json as { pid: number; env: Record<string, string> });
    expect(first?.pid).not.toBe(second?.pid);
    expect(first?.env).not.toHaveProperty('MONITOR_WARM');
  });

  it('refuses warm: true for a worker that does not declare it, and for a command', async () => {
    const worker = await warmConn.call('run_script_batch', { worker: 'echo.py', inputs: [{}], warm: true });
    expect(worker.isError).toBe(true);
    expect(textOf(worker)).toMatch(
      /^INVALID_INPUT: echo\.py cannot run warm: it does not declare "# monitor: warm: yes"\.\nNext: Omit warm/,
    );
    const command = await warmConn.call('run_script_batch', { command: 'echo', inputs: [{}], warm: true });
    expect(textOf(command)).toMatch(/^INVALID_INPUT: echo cannot run warm: a command never does/);
    // Cold is always fine.
    expect(
      (await warmConn.call('run_script_batch', { worker: 'echo.py', inputs: [{}], warm: false })).isError,
    ).toBeFalsy();
  });
});

describe('run_script_batch with pack', () => {
  it('runs up to `pack` inputs per cold process with results one per input, as cold runs give them, and stores the choice with the job', async () => {
    const files = (await readdir(path.join(repoRoot, 'src', 'pools', 'script')))
      .filter((name) => name.endsWith('.ts'))
      .map((name) => `src/pools/script/${name}`);
    files.push('workers/code_stats.py', 'workers/outline.py', 'README.md', 'no/such/file.ts');
    const inputs = files.map((file) => ({ args: [file] }));
    const jobId = await submitScripts(conn, { worker: 'code_stats.py', inputs, pack: 4, concurrency: 2 });
    // Packing is for cold runs: it makes the job cold, and a resumed job packs the same way.
    expect(conn.app.engine.meta(jobId).options).toMatchObject({ pack: 4, warm: false });
    const { results, job } = await collectAll(conn, jobId);
    expect(job).toMatchObject({ state: 'succeeded' });
    expect(results).toHaveLength(files.length);
    const coldId = await submitScripts(conn, { worker: 'code_stats.py', inputs, warm: false, concurrency: 2 });
    const { results: cold } = await collectAll(conn, coldId);
    for (const result of results) {
      expect(result.id).toBe(files[result.index]);
      const packed = result.value?.packed as { with: number; position: number; dropped: string[] } | undefined;
      const coldJson = cold[result.index]?.value?.json as { files: unknown[] };
      // The last batches of a job are smaller (its queue shared among its slots); one of a single input runs as a plain cold task.
      if (packed === undefined) {
        expect(result.value?.json).toEqual(coldJson);
        continue;
      }
      expect(packed.with).toBeGreaterThan(1);
      expect(packed.with).toBeLessThanOrEqual(4);
      expect(packed.dropped).toEqual(['totals']);
      expect(result.value?.json).toEqual({ files: coldJson.files });
    }
    expect(results.filter((r) => r.value?.packed !== undefined).length).toBeGreaterThan(files.length / 2);
  });

  it('refuses pack for a command', async () => {
    const allowed = await connectInMemory(
      await scriptConfig((c) => {
        c.allowCommands = ['echo'];
      }),
      { env: { PATH: process.env.PATH } },
    );
    try {
      const command = await allowed.call('run_script_batch', { command: 'echo', inputs: [{ args: ['a'] }], pack: 2 });
      expect(textOf(command)).toMatch(
        /^INVALID_INPUT: echo cannot pack inputs: a command never does\.\nNext: Omit pack/,
      );
    } finally {
      await allowed.close();
    }
  });
});

describe('run_script_batch refuses bad input and submits nothing', () => {
  const cases: Array<{ name: string; args: Record<string, unknown>; expected: RegExp }> = [
    {
      name: 'an unknown worker',
      args: { worker: 'nope.py', inputs: [{}] },
      expected:
        /^WORKER_NOT_FOUND: No worker "nope.py"[\s\S]*Next: Available workers: .*analyze_dependencies\.py.*echo\.py/,
    },
    {
      name: 'a path climbing out',
      args: { worker: '../../etc/passwd', inputs: [{}] },
      expected: /^PATH_OUTSIDE_ROOT: [\s\S]*Next: /,
    },
    {
      name: 'an absolute path elsewhere',
      args: { worker: '/etc/passwd', inputs: [{}] },
      expected: /^PATH_OUTSIDE_ROOT: The worker "\/etc\/passwd" resolves outside[\s\S]*Next: /,
    },
    {
      name: 'a symlink out of the workers folder',
      args: { worker: 'escape.py', inputs: [{}] },
      expected:
        /^PATH_OUTSIDE_ROOT: The worker "escape.py" resolves outside[\s\S]*Next: .*symlinks are followed.*--workers-dir or "workersDirs"/,
    },
    {
      name: 'no worker',
      args: { inputs: [{}] },
      expected: /^INVALID_INPUT: Name the worker to run\.\nNext: Pass "worker" with one of: .*code_stats\.py/,
    },
    {
      name: 'worker and command',
      args: { worker: 'echo.py', command: 'ls', inputs: [{}] },
      expected: /^INVALID_INPUT: Give either worker or command, not both/,
    },
    {
      name: 'a command while commands are off',
      args: { command: 'ls', inputs: [{}] },
      expected: /^COMMAND_NOT_ALLOWED: [\s\S]*Next: Use a worker instead/,
    },
    {
      name: 'zero concurrency',
      args: { worker: 'echo.py', inputs: [{}], concurrency: 0 },
      expected: /concurrency must be a whole number from 1 up to the server maximum/,
    },
    {
      name: 'negative concurrency',
      args: { worker: 'echo.py', inputs: [{}], concurrency: -3 },
      expected: /concurrency must be a whole number from 1/,
    },
    {
      name: 'huge concurrency',
      args: { worker: 'echo.py', inputs: [{}], concurrency: 100000 },
      expected: /^INVALID_INPUT: concurrency must be from 1 to 8, got 100000\.\nNext: Use at most 8/,
    },
    {
      name: 'a zero timeout',
      args: { worker: 'echo.py', inputs: [{}], timeout_seconds: 0 },
      expected: /timeout_seconds must be more than 0/,
    },
    {
      name: 'an empty inputs list',
      args: { worker: 'echo.py', inputs: [] },
      expected: /inputs is empty: give at least one task/,
    },
    {
      name: 'stdin and json in one task',
      args: { worker: 'echo.py', inputs: [{}, { stdin: 'a', json: { b: 1 } }] },
      expected: /^INVALID_INPUT: inputs\[1\] has both stdin and json[\s\S]*Next: /,
    },
    { name: 'a misspelt task field', args: { worker: 'echo.py', inputs: [{ arg: ['x'] }] }, expected: /arg/ },
    {
      name: 'a cwd outside the roots',
      args: { worker: 'echo.py', inputs: [{}], cwd: '/etc' },
      expected: /^PATH_OUTSIDE_ROOT: The cwd "\/etc" resolves outside[\s\S]*Next: /,
    },
    {
      name: 'a cwd that is a file',
      args: { worker: 'echo.py', inputs: [{}], cwd: 'package.json' },
      expected: /^INVALID_INPUT: The cwd "package.json" is not a folder/,
    },
    {
      name: 'a bad env name',
      args: { worker: 'echo.py', inputs: [{}], env: { 'BAD=NAME': 'x' } },
      expected: /^INVALID_INPUT: "BAD=NAME" is not a valid environment variable name/,
    },
    ...[
      ...[
        'NODE_OPTIONS',
        'LD_PRELOAD',
        'DYLD_INSERT_LIBRARIES',
        'PYTHONPATH',
        'PYTHONSTARTUP',
        'BASH_ENV',
        'ENV',
        'PATH',
        'PERL5OPT',
        'RUBYOPT',
        'SHELLOPTS',
        'ld_preload',
      ],
      // What a denylist let through, each a way to run code: a .pth file in HOME's user site, git's and OpenSSL's hooks, editors.
      ...[
        'HOME',
        'XDG_CONFIG_HOME',
        'GIT_SSH_COMMAND',
        'GIT_CONFIG_COUNT',
        'GIT_CONFIG_KEY_0',
        'GIT_PROXY_COMMAND',
        'EDITOR',
        'PAGER',
        'OPENSSL_CONF',
        'MY_WORKER_MODE',
      ],
    ].map((name) => ({
      name: `env ${name}, which is not on the allowlist`,
      args: {
        worker: 'echo.py',
        inputs: [{}],
        env: {
          LANG: 'C',
          [name]: name === 'NODE_OPTIONS' ? '--import=data:text/javascript,process.exit(9)' : '/tmp/x',
        },
      },
      expected: new RegExp(
        `^INVALID_INPUT: env cannot set ${name}: only variables that cannot change which code runs[\\s\\S]*Next: Leave it out`,
      ),
    })),
    {
      name: 'env MONITOR_ALLOWED_ROOTS',
      args: { worker: 'echo.py', inputs: [{}], env: { MONITOR_ALLOWED_ROOTS: '/' } },
      expected: /^INVALID_INPUT: env cannot set MONITOR_ALLOWED_ROOTS: MONITOR_\* variables are set by the server/,
    },
    {
      name: 'a helper module hidden from list_workers',
      args: { worker: '_common.py', inputs: [{}] },
      expected: /^WORKER_NOT_FOUND: "_common.py" is not a worker[\s\S]*Next: Available workers/,
    },
    {
      name: 'a NUL byte in an env value',
      args: { worker: 'echo.py', inputs: [{}], env: { MODE: 'a\u0000b' } },
      expected: /^INVALID_INPUT: The value of env MODE contains a NUL byte[\s\S]*Next: /,
    },
    {
      name: 'pack for a worker that does not declare it',
      args: { worker: 'echo.py', inputs: [{ args: ['a'] }], pack: 4 },
      expected:
        /^INVALID_INPUT: echo\.py cannot pack inputs: it does not declare "# monitor: pack: files"\.\nNext: Omit pack/,
    },
    {
      name: 'pack with stdin',
      args: { worker: 'code_stats.py', inputs: [{ args: ['a'] }, { stdin: 'x' }], pack: 4 },
      expected:
        /^INVALID_INPUT: inputs\[1\] has stdin, but pack joins the inputs' args into one command line[\s\S]*Next: Give each input its files as args, or omit pack/,
    },
    {
      name: 'pack with json',
      args: { worker: 'code_stats.py', inputs: [{ json: { files: ['a'] } }], pack: 4 },
      expected: /^INVALID_INPUT: inputs\[0\] has json, but pack/,
    },
    {
      name: 'pack with an input without args',
      args: { worker: 'code_stats.py', inputs: [{ args: ['a'] }, { args: [] }], pack: 4 },
      expected: /^INVALID_INPUT: inputs\[1\] has no args, but pack/,
    },
    {
      name: 'pack with warm: true',
      args: { worker: 'code_stats.py', inputs: [{ args: ['a'] }], pack: 4, warm: true },
      expected:
        /^INVALID_INPUT: pack and warm: true do not go together[\s\S]*Next: Omit warm \(pack makes the job cold\)/,
    },
    {
      name: 'pack 1',
      args: { worker: 'code_stats.py', inputs: [{ args: ['a'] }], pack: 1 },
      expected: /pack must be a whole number from 2 to 64/,
    },
    {
      name: 'pack 65',
      args: { worker: 'code_stats.py', inputs: [{ args: ['a'] }], pack: 65 },
      expected: /pack must be a whole number from 2 to 64/,
    },
    {
      name: 'a NUL byte in an argument',
      args: { worker: 'echo.py', inputs: [{ args: ['ok'] }, { args: ['fine', 'a\u0000b'] }] },
      expected: /^INVALID_INPUT: inputs\[1\]\.args\[1\] contains a NUL byte[\s\S]*Next: .*stdin/,
    },
  ];

  for (const { name, args, expected } of cases) {
    it(`refuses ${name}`, async () => {
      const before = await jobCount();
      const reply = await conn.call('run_script_batch', args);
      expect(reply.isError).toBe(true);
      expect(textOf(reply)).toMatch(expected);
      expect(await jobCount()).toBe(before);
    });
  }
});
