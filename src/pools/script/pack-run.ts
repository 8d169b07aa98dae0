import path from 'node:path';
import type { TaskContext, TaskResult } from '../../engine/types.js';
import type { ColdRunner, ProcessRun } from './cold.js';
import type { ScriptTaskInput } from './job-options.js';
import type { RunPlan } from './launch.js';
import { decodeUtf8, OutputCapture, tailUtf8 } from './output.js';
import { PackOutput, splitPack } from './pack.js';
import {
  failedResult,
  type OutputAllowance,
  STDERR_TAIL_BYTES,
  taskCapture,
  taskResult,
  type ValueLimits,
} from './task-value.js';

/** The longest delay setTimeout takes (2^31 - 1 ms). */
const MAX_TIMER_MS = 2_147_483_647;

/** A task in a pack: its place in the batch, its input and args, and what it may write to disk. */
export interface PackMember {
  at: number;
  task: TaskContext;
  input: ScriptTaskInput;
  args: readonly string[];
  allowance: OutputAllowance;
}

/** What a pack's run needs from the pool. */
export interface PackRunDeps {
  cold: ColdRunner;
  outputCapBytes: number;
  limits: ValueLimits;
}

/** The pack's shared log: its stderr, and what the pack is. */
interface PackLog {
  stderr: OutputCapture;
  members: readonly PackMember[];
}

/**
 * The pack's one process (its members' args together, see pack.ts), then a result per member: its
 * share of the output, or its own run alone when the pack failed as a whole. `logAllowance`: what
 * the pack's log may write (its first task's).
 */
export async function runPack(
  deps: PackRunDeps,
  plan: RunPlan,
  members: readonly PackMember[],
  logAllowance: OutputAllowance,
): Promise<TaskResult[]> {
  const [lead] = members;
  if (!lead) return [];
  const { task: first } = lead;
  // Each input's own timeout, end to end; within what a timer can hold (~24.8 days: past it Node fires at once).
  const timeoutMs = Math.min(plan.timeoutMs * members.length, MAX_TIMER_MS);
  const stdout = new PackOutput(deps.outputCapBytes);
  // One log for the pack, named after its first task; a task's own stdout file comes from its split.
  const stderr = new OutputCapture(
    path.join(first.outputDir, `pack-${first.index}.stderr`),
    deps.outputCapBytes,
    STDERR_TAIL_BYTES,
    logAllowance,
  );
  await deps.cold.takeTurn(first.signal);
  const ran = await deps.cold.runProcess(
    plan,
    first,
    {
      args: members.flatMap((member) => member.args),
      perProcessEnv: {
        MONITOR_TASK_INDEX: String(first.index),
        MONITOR_ATTEMPT: String(first.attempt),
        MONITOR_STDIN_FORMAT: 'none',
        MONITOR_PACK_INDICES: members.map((member) => member.task.index).join(','),
      },
      stdinText: undefined,
      timeoutMs,
      // The tasks of a batch share one signal.
      signal: first.signal,
      began: () => members.forEach((member) => member.task.began?.()),
    },
    { stdout, stderr },
  );
  const log = { stderr, members };
  // Stopped with its job: nothing runs again.
  if (ran.stopReason === 'cancel') return eachCancelled(deps, plan, log, ran);
  const split = splitPack(
    { ...ran, stdout, stderrTail: decodeUtf8(tailUtf8(stderr.last(), STDERR_TAIL_BYTES)).text },
    members.map((member) => member.args),
    timeoutMs,
  );
  if ('problem' in split) return eachAlone(deps, plan, log, split.problem);
  return eachShare(deps, plan, log, ran, split);
}

/** A member's place in its pack, as its value tells it. */
function place(log: PackLog, position: number): { with: number; position: number } {
  return { with: log.members.length, position };
}

function stdoutOf(deps: PackRunDeps, member: PackMember): OutputCapture {
  return taskCapture(member.task, 'stdout', deps.outputCapBytes, member.allowance);
}

/** The pack was cancelled: every member ends cancelled, with the pack's log. */
async function eachCancelled(deps: PackRunDeps, plan: RunPlan, log: PackLog, ran: ProcessRun): Promise<TaskResult[]> {
  const results: TaskResult[] = [];
  for (const [position, member] of log.members.entries()) {
    results.push(
      await taskResult(
        plan,
        {
          exit: ran.exit,
          stopReason: 'cancel',
          stdout: stdoutOf(deps, member),
          stderr: log.stderr,
          allowance: member.allowance,
          extra: { packed: place(log, position) },
        },
        deps.limits,
      ),
    );
  }
  return results;
}

/** The pack failed as a whole (`problem`): each member runs again, alone, and its value says why. */
async function eachAlone(deps: PackRunDeps, plan: RunPlan, log: PackLog, problem: string): Promise<TaskResult[]> {
  const kept = await log.stderr.finish(false).catch(() => undefined);
  const why = `Ran alone: its pack of ${log.members.length} inputs ${problem}${kept === undefined ? '' : ` (the pack's log: ${kept})`}.`;
  const results: TaskResult[] = [];
  for (const [position, member] of log.members.entries()) {
    const told = { notes: [why], extra: { packed: { ...place(log, position), ran_alone: true } } };
    results.push(
      await deps.cold
        .runAlone(plan, member.input, member.task, member.allowance, told)
        .catch((error: unknown) => failedResult(member.task, error)),
    );
  }
  return results;
}

/** The pack worked: each member's result is its share of the output, with the pack's log. */
async function eachShare(
  deps: PackRunDeps,
  plan: RunPlan,
  log: PackLog,
  ran: ProcessRun,
  split: { entries: unknown[][]; dropped: string[] },
): Promise<TaskResult[]> {
  const results: TaskResult[] = [];
  // One at a time: the shared log's file is written by the first that wants it.
  for (const [position, member] of log.members.entries()) {
    const own = stdoutOf(deps, member);
    // What a cold run of this input alone prints, less the pack's other top-level keys.
    own.accept(Buffer.from(`${JSON.stringify({ files: split.entries[position] ?? [] })}\n`));
    const packed =
      split.dropped.length > 0 ? { ...place(log, position), dropped: split.dropped } : place(log, position);
    const notes =
      log.stderr.bytes > 0 ? [`stderr_tail is the log of the whole pack of ${log.members.length} inputs.`] : [];
    results.push(
      await taskResult(
        plan,
        {
          exit: ran.exit,
          stopReason: undefined,
          stdout: own,
          stderr: log.stderr,
          allowance: member.allowance,
          notes,
          extra: { packed },
        },
        deps.limits,
      ),
    );
  }
  return results;
}
