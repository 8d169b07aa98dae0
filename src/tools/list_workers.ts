import { type ScriptServices, scriptKind, type WorkerEntry, type WorkersFolder } from '../pools/script/index.js';
import { defineKindTool } from './tool.js';

function describeInput(worker: WorkerEntry): string {
  const { args, stdin, json } = worker.header.input;
  const forms: string[] = [];
  if (args !== undefined) forms.push(`args: ${args}`);
  if (stdin !== undefined) forms.push(`stdin: ${stdin}`);
  if (json !== undefined) forms.push(`json: ${json}`);
  return forms.length > 0 ? forms.join(' | ') : 'not declared';
}

function workerView(worker: WorkerEntry): Record<string, unknown> {
  const view: Record<string, unknown> = {
    name: worker.name,
    description: worker.header.description ?? 'no description',
    interpreter: worker.interpreter,
    input: worker.header.input,
    path: worker.path,
    warm: worker.header.warm,
  };
  if (worker.header.pack !== undefined) view.pack = worker.header.pack;
  if (worker.header.output !== undefined) view.output = worker.header.output;
  if (worker.header.env.length > 0) view.env = worker.header.env;
  if (Object.keys(worker.header.extra).length > 0) view.more = worker.header.extra;
  if (worker.shadows) view.shadows = worker.shadows;
  return view;
}

/** A folder as the model sees it: where, which (bundled, user, added), there or not, how many workers. */
function folderView(folder: WorkersFolder, scripts: ScriptServices): Record<string, unknown> {
  const role =
    folder.dir === scripts.bundledWorkersDir ? 'bundled' : folder.dir === scripts.userWorkersDir ? 'user' : 'added';
  return { path: folder.dir, role, exists: folder.exists, workers: folder.workers };
}

function folderText(view: Record<string, unknown>): string {
  const count = view.exists ? `${String(view.workers)} worker(s)` : 'not created yet';
  return `${String(view.path)} (${String(view.role)}, ${count})`;
}

/** Where the user puts a worker of their own, and how one imports the bundled helpers. */
function newWorkersNote(scripts: ScriptServices, folders: readonly WorkersFolder[]): string {
  const user = folders.find((f) => f.dir === scripts.userWorkersDir);
  const where = user
    ? `the user workers folder ${user.dir}${user.exists ? '' : ' (created by its first worker)'}`
    : 'a folder the user adds with --workers-dir';
  return `New workers go in ${where}: \`monitor-mcp new-worker NAME\` (or NAME --node) writes a working warm worker there, listed here at once. Any worker may use the bundled helpers: Python \`import _common\`, Node \`await import(process.env.MONITOR_SERVE)\`.`;
}

export const listWorkersTool = defineKindTool(scriptKind, {
  name: 'list_workers',
  title: 'List worker scripts',
  description:
    "Lists the worker scripts run_script_batch can run (bundled: dependency analysis, code statistics, outlines, regex search with context, a patch checker for checks; and the user's): name, description, interpreter, input (args, stdin or json), output, warm, pack; and the allowed commands.",
  inputSchema: {},
  annotations: { readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: false },
  async handler(_args, ctx) {
    const scripts = ctx.kind;
    const { workers, folders } = await scripts.survey();
    const dirs = folders.map((folder) => folderView(folder, scripts));
    const newWorkers = newWorkersNote(scripts, folders);
    const lines: string[] = [];
    const usage =
      workers.length === 0
        ? `No worker scripts found in ${scripts.workerDirs.join(', ')}. The user can add a folder with --workers-dir or "workersDirs" in the config file.`
        : `Run one with run_script_batch {"worker": NAME, "inputs": [{"args": [...]}, ...]}: one task per input.`;
    if (workers.length === 0) {
      lines.push(usage);
    } else {
      lines.push(`${workers.length} worker(s). ${usage}`);
      for (const worker of workers) {
        lines.push('');
        lines.push(`${worker.name} (${worker.interpreter}): ${worker.header.description ?? 'no description'}`);
        lines.push(`  input: ${describeInput(worker)}`);
        if (worker.header.output !== undefined) lines.push(`  output: ${worker.header.output}`);
        if (worker.header.env.length > 0) lines.push(`  env it reads: ${worker.header.env.join(', ')}`);
        if (worker.header.warm) lines.push('  warm: yes (one process serves many tasks)');
        if (worker.header.pack !== undefined)
          lines.push('  pack: files (run_script_batch "pack" runs several inputs in one process)');
        for (const [key, value] of Object.entries(worker.header.extra)) lines.push(`  ${key}: ${value}`);
        if (worker.shadows) lines.push(`  (hides a same-named script in: ${worker.shadows.join(', ')})`);
      }
    }
    const commands = scripts.allowCommands;
    const commandsNote =
      commands.length > 0
        ? `Commands allowed as run_script_batch "command": ${commands.join(', ')}.`
        : 'Arbitrary commands are off (the user can allow executables with --allow-command NAME or "allowCommands").';
    lines.push('');
    lines.push(`Worker folders, searched in order (the first wins a name): ${dirs.map(folderText).join('; ')}`);
    lines.push(newWorkers);
    lines.push(commandsNote);
    return {
      text: lines.join('\n'),
      structured: {
        workers: workers.map(workerView),
        usage,
        dirs,
        new_workers: newWorkers,
        commands: [...commands],
        commands_note: commandsNote,
      },
    };
  },
});
