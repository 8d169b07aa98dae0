import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { renderJobTable } from '../../src/commands/jobs.js';
import { connectInMemory, jobIdOf, repoRoot, testConfig } from '../helpers/client.js';

describe('renderJobTable', () => {
  it('shows each job with its counts, read-only', async () => {
    const config = await testConfig((c) => c.workersDirs.push(path.join(repoRoot, 'test', 'fixtures', 'e2e-workers')));
    const m = await connectInMemory(config);
    try {
      const reply = await m.call('run_script_batch', { worker: 'emit.py', inputs: [{ args: ['a'] }, { args: ['b', '1'] }], label: 'table test', wait_seconds: 20 });
      const jobId = jobIdOf(reply);
      const table = await renderJobTable(config.stateDir, Date.now());
      const row = table.split('\n').find((line) => line.startsWith(jobId)) ?? '';
      expect(row).toMatch(/script\s+table test\s+2\s+1\s+1\s+0\s+0/);
      expect(table).toMatch(/^JOB\s+KIND\s+LABEL\s+TASKS\s+OK\s+FAILED\s+CANCELLED\s+PENDING/);
    } finally {
      await m.close();
    }
    expect(await renderJobTable(config.stateDir, Date.now())).toMatch(/No jobs in/);
  });
});
