import path from 'node:path';
import {
  atMost,
  bool,
  choice,
  type Constraint,
  derived,
  int,
  num,
  pathSetting,
  platformOf,
  type SettingsTree,
  type ValuesOf,
} from './settings.js';
import { list } from './collections.js';

/** Longest timeout anywhere (a day): Node timers overflow past 2^31-1 ms (~24.8 days) and fire at once. */
export const MAX_TIMEOUT_SECONDS = 86_400;
/** Longest wait of one tool call: Claude Code backgrounds a call after 2 minutes, so stay under it. */
export const MAX_WAIT_SECONDS = 110;
/**
 * The largest page, in tokens. A reply carries its page twice (text and structuredContent), and
 * Claude Code refuses tool output above 25,000 tokens: two copies of 12,000 stay under it.
 */
export const MAX_BUDGET_TOKENS = 12_000;

/**
 * The largest message limit, in MiB. Node cannot make a string of 512 MiB (V8's limit is just
 * under 2^29 characters), and a message is held as bytes, text and parsed objects at once.
 */
export const MAX_MESSAGE_MIB = 256;

/** The settings of the server itself: the state directory, the allowed folders, logging, collect_results. */
export const CORE_SETTINGS = {
  stateDir: pathSetting({
    help: 'Where jobs are kept',
    default: (ctx) => platformOf(ctx).folders(ctx.env, ctx.home).stateDir,
    defaultText:
      'Linux: $XDG_STATE_HOME/monitor-mcp (~/.local/state/monitor-mcp); macOS: ~/Library/Application Support/monitor-mcp/state; Windows: %LOCALAPPDATA%\\monitor-mcp\\state',
    env: 'MONITOR_STATE_DIR',
    flag: '--state-dir DIR',
  }),
  retentionDays: num({
    help: 'Jobs are removed at start-up this many days after they finished',
    default: 7,
    min: 0,
    env: 'MONITOR_RETENTION_DAYS',
    flag: '--retention-days N',
  }),
  maxStateMB: int({
    help: 'Most the state directory may hold, in MB; past it the oldest finished jobs are removed first',
    default: 10 * 1024,
    min: 1,
    env: 'MONITOR_MAX_STATE_MB',
    flag: '--max-state-mb N',
  }),
  allowedRoots: list({
    help: 'Folders that paths must stay inside (script cwd, LLM files, what local agents and the bundled workers read)',
    details:
      "Other workers' args are passed as given. The last source that names roots replaces the others (and the cwd default)",
    item: 'folder',
    paths: true,
    combine: 'replace',
    // The folder the client started the server in is the project, except the filesystem root:
    // Claude Desktop may start servers in "/", and that would allow every file. Then no folder is
    // allowed until the user names one (--root), and path-taking tools say so.
    default: (ctx) => (path.parse(path.resolve(ctx.cwd)).root === path.resolve(ctx.cwd) ? [] : [ctx.cwd]),
    defaultText: "the server's cwd; none if that is /",
    env: { name: 'MONITOR_ALLOWED_ROOTS', separator: 'path' },
    flag: '--root DIR',
    variadic: true,
  }),
  maxMessageMB: int({
    help: 'Largest JSON-RPC message (one stdin line) the server reads, in MB (MiB, 1,048,576 bytes)',
    details: `A longer line is answered with an error and skipped; the server keeps serving. At most ${MAX_MESSAGE_MIB}: the server holds a message several times over while parsing it. Large batches go in a JSONL file instead (inputs_file and its kin)`,
    default: 64,
    min: 1,
    max: MAX_MESSAGE_MIB,
    env: 'MONITOR_MAX_MESSAGE_MB',
    flag: '--max-message-mb N',
  }),
  liveFigures: bool({
    help: "Publish this server's live figures for the dashboard every second, and take its cancel and resume requests",
    details: 'live/<pid>.json and control/ in the state directory: one small write a second',
    default: true,
    env: 'MONITOR_LIVE_FIGURES',
  }),
  logLevel: choice(['debug', 'info', 'warn', 'error'], {
    help: 'How much to log (always to stderr)',
    default: 'info',
    env: 'MONITOR_LOG_LEVEL',
    flag: '--log-level LEVEL',
  }),
  pathRules: derived(
    "How paths are compared when kept inside the allowed folders: this system's (case-insensitive on macOS and Windows)",
    (ctx) => platformOf(ctx).pathRules,
  ),
  collect: {
    defaultWaitSeconds: num({
      help: 'Default wait of collect_results',
      default: 20,
      min: 0,
      max: MAX_WAIT_SECONDS,
      flag: '--wait-seconds N',
    }),
    maxWaitSeconds: num({
      help: 'Longest wait of any call',
      details: `At most ${MAX_WAIT_SECONDS}: Claude Code backgrounds calls after 2 min; some clients give up at 60 s`,
      default: 50,
      min: 0,
      max: MAX_WAIT_SECONDS,
      flag: '--max-wait-seconds N',
    }),
    defaultBudgetTokens: int({
      help: 'Default page size of collect_results, in tokens',
      default: 8000,
      min: 1,
      max: MAX_BUDGET_TOKENS,
      env: 'MONITOR_BUDGET_TOKENS',
      flag: '--budget-tokens N',
    }),
    maxBudgetTokens: int({
      help: 'Largest page a call may ask for, in tokens',
      details: `At most ${MAX_BUDGET_TOKENS}: a reply carries its page as text and as structuredContent, and both together stay under Claude Code's 25,000-token limit`,
      default: MAX_BUDGET_TOKENS,
      min: 1,
      max: MAX_BUDGET_TOKENS,
    }),
  },
} satisfies SettingsTree;

export const CORE_CONSTRAINTS: readonly Constraint[] = [
  atMost('collect.defaultWaitSeconds', 'collect.maxWaitSeconds'),
  atMost('collect.defaultBudgetTokens', 'collect.maxBudgetTokens'),
];

export type CoreConfig = ValuesOf<typeof CORE_SETTINGS>;
