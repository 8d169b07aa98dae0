import type { TaskContext, TaskResult } from '../../engine/types.js';
import { toTaskError } from '../../errors.js';
import { ScriptError } from './errors.js';
import type { RunPlan } from './launch.js';
import type { OutputCapture } from './output.js';
import {
  lastLineOf,
  type OutputAllowance,
  type ProcessExit,
  taskCapture,
  taskResult,
  type ValueLimits,
} from './task-value.js';
import type { WarmProcess } from './warm-process.js';
import type { Outcome } from './warm-protocol.js';
import { missingHelperHint } from './helpers.js';

const PROTOCOL_HINT =
  'A warm worker writes exactly one JSON line per request on fd 4, {"id": <the request\'s id>, "exit_code": 0, "result": ...} (or "output": "text"), and its logs on stdout/stderr. Fix the worker; meanwhile run_script_batch with warm: false runs it cold.';

/** What a warm task's result needs from the pool. */
export interface WarmResultOptions extends ValueLimits {
  outputCapBytes: number;
}

/**
 * A warm task's result in a cold task's shape (see taskResult): the reply's output or result as
 * its stdout, its log as its stderr, which process served it; a dead process or a broken reply as
 * the task's error.
 */
export async function warmResult(
  plan: RunPlan,
  task: TaskContext,
  ran: {
    outcome: Outcome;
    worker: WarmProcess;
    log: OutputCapture;
    allowance: OutputAllowance;
    served: { process: number; task: number };
    crash: { exit: ProcessExit | undefined; process: number } | undefined;
  },
  options: WarmResultOptions,
): Promise<TaskResult> {
  const { outcome, worker, log, allowance, crash } = ran;
  const { outputCapBytes } = options;
  const stdout = taskCapture(task, 'stdout', outputCapBytes, allowance);
  const extra: Record<string, unknown> = { warm: ran.served };
  const notes: string[] = [];
  if (crash) {
    extra.retried_after_crash = { exit_code: crash.exit?.code ?? null, signal: crash.exit?.signal ?? null };
    notes.push(
      `Warm process ${crash.process} ${describeExit(crash.exit)} mid-task; the task ran again on a fresh process (${ran.served.process}). stderr_tail holds the log of both runs.`,
    );
  }
  const end = { stdout, stderr: log, allowance, notes, extra };
  const name = plan.launch.display;
  switch (outcome.kind) {
    case 'reply': {
      const { reply } = outcome;
      // The bytes a cold run of the same worker would print: its output, or its result as one JSON line.
      const bytes =
        reply.output !== undefined
          ? Buffer.from(reply.output)
          : reply.result !== undefined
            ? Buffer.from(`${JSON.stringify(reply.result)}\n`)
            : undefined;
      if (bytes !== undefined && bytes.length > 0) stdout.accept(bytes);
      return taskResult(
        plan,
        { ...end, exit: { code: reply.exit_code, signal: null }, stopReason: undefined },
        options,
      );
    }
    case 'stopped':
      return taskResult(plan, { ...end, exit: worker.exit, stopReason: outcome.reason }, options);
    case 'protocol': {
      const error = new ScriptError(
        'WORKER_PROTOCOL',
        `${name} (warm process ${worker.number}) ${outcome.problem}; the process was killed and is replaced for the next task.`,
        { hint: outcome.hint ?? PROTOCOL_HINT },
      );
      return taskResult(plan, { ...end, exit: undefined, stopReason: undefined, error: toTaskError(error) }, options);
    }
    case 'exited': {
      const result = await taskResult(plan, { ...end, exit: worker.exit, stopReason: undefined }, options);
      const lastLine = lastLineOf(result.value?.stderr_tail);
      const error = new ScriptError(
        'NON_ZERO_EXIT',
        `${name}: its warm process died mid-task (${describeExit(worker.exit)})${crash ? ', on a fresh process too' : ''}${lastLine ? `: ${lastLine}` : '.'}`,
        {
          hint:
            missingHelperHint(result.value?.stderr_tail, plan.launch.helpers) ??
            'The task makes the worker crash: the value holds its stderr_tail (full log in files.stderr when long). Fix the worker or the input (warm: false runs it cold), then resume_job with include_failed: true.',
        },
      );
      return { ...result, ok: false, error: toTaskError(error) };
    }
  }
}

function describeExit(exit: ProcessExit | undefined): string {
  if (exit?.signal) return `was killed by ${exit.signal}`;
  return exit?.code === undefined || exit.code === null ? 'ended' : `exited with code ${exit.code}`;
}
