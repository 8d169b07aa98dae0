/**
 * Test files that need a particular system. vitest.config.ts leaves them out elsewhere and says so
 * on stderr, file by file, so a run on macOS or Windows (the public workflow,
 * .github/workflows/ci.yml) reports what it did not test instead of failing on a missing /proc.
 * Everything else runs on every system; the platform code of each system is tested on any of
 * them (test/platform/, test/paths.test.ts).
 */

/** Need Linux: /proc (exact start times, environments, memory, open files) or the vfork spawn helper. */
export const NEEDS_LINUX: Readonly<Record<string, string>> = {
  'test/processes.test.ts': 'exact start times from /proc',
  'test/pools/script/orphans.test.ts': 'start times of real worker groups from /proc (its macOS case runs ps here)',
  'test/pools/script/descendants.test.ts': "finds a worker's descendants by their environment in /proc",
  'test/pools/script/spawner.test.ts': 'the vfork spawn helper, which runs on Linux only',
  'test/pools/script/relay-spawner.test.ts': 'the vfork spawn helper, which runs on Linux only',
  'test/pools/script/spawn-helper.test.ts': 'the vfork spawn helper, which runs on Linux only',
  'test/store/appender.test.ts': 'counts the files the process holds open in /proc/self/fd',
  'test/pools/llm/llama-server.test.ts': 'the llama-server kit from ../shared/llama is a Linux x86-64 build',
};

/**
 * Need a POSIX system (Linux or macOS): the fixture workers are bash scripts, executable files with
 * `#!` lines and Python scripts that handle SIGTERM, run in process groups; the tests name POSIX
 * paths (/tmp, /bin). On Windows the same code paths are covered by test/platform/win32.test.ts
 * (tree kill, cmd quoting, PATHEXT, folders) and the win32 rows of test/paths.test.ts.
 */
export const NEEDS_POSIX: Readonly<Record<string, string>> = {
  'test/pools/script/pool.test.ts': 'fixture workers in bash, process groups and signals',
  'test/pools/script/cold.test.ts': 'fixture workers, process groups and signals',
  'test/pools/script/task-value.test.ts': 'fixture workers',
  'test/pools/script/warm.test.ts': 'fixture workers, process groups and signals',
  'test/pools/script/warm-process.test.ts': 'fixture workers, process groups and signals',
  'test/pools/script/pack-run.test.ts': 'fixture workers',
  'test/pools/script/catalog.test.ts': 'executable bits and #! scripts run directly',
  'test/pools/script/interpreters.test.ts':
    'executable bits (its Windows lookup rows run anywhere, but the file shares the POSIX ones)',
  'test/pools/script/header.test.ts': 'runs python3 and names /bin paths',
  'test/tools/run_script_batch.test.ts': 'fixture workers in bash, signals, /tmp paths',
  'test/tools/inputs_file.test.ts': 'fixture workers and /tmp paths',
  'test/tools/list_workers.test.ts': 'fixture workers with executable bits',
  'test/tools/list_jobs.test.ts': 'fixture workers',
  'test/tools/collect_results.test.ts': 'fixture workers',
  'test/workers/bundled.test.ts': "POSIX paths in the bundled workers' cases",
  'test/workers/serve.test.ts': 'POSIX paths',
  'test/workers/warm.test.ts': 'POSIX paths and signals',
  'test/e2e/chaos.test.ts': 'SIGKILL of a server mid-task and the process groups it leaves',
  'test/e2e/warm.test.ts': 'warm fixture workers and the process groups a killed server leaves',
  'test/e2e/model-view.test.ts': 'fixture workers',
  'test/commands/jobs.test.ts': 'fixture workers and SIGINT to `jobs --watch`',
  'test/commands/client-config.test.ts': 'expects POSIX absolute paths',
  'test/dashboard/dashboard.test.ts': 'fixture workers (and chromium: Linux only in the workflow)',
  'test/tools/ui-browser.test.ts': 'fixture workers (and chromium: Linux only in the workflow)',
  'test/platform/posix.test.ts': 'runs ps and sends signals to process groups',
};

/** The files to leave out on `os` (process.platform), with why. */
export function leftOut(os: string): Array<[string, string]> {
  if (os === 'linux') return [];
  const linux = Object.entries(NEEDS_LINUX);
  return os === 'win32' ? [...linux, ...Object.entries(NEEDS_POSIX)] : linux;
}
