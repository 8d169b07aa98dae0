// `npm run prepare` (npm runs it after `npm ci`/`npm install` in a checkout, before `npm pack`, and
// when a checkout is installed as a folder: `npm i -g ./monitor-mcp`, `npx -y ./monitor-mcp`). It
// builds dist/. A folder install gets no dependencies of its own, so they are installed first here,
// exactly as the lockfile says, when TypeScript is not there yet.
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const npm = process.env.npm_execpath;
// A global install hands its settings down (npm_config_global, _prefix): they are not for this folder.
const env = Object.fromEntries(
  Object.entries(process.env).filter(([name]) => !/^npm_config_(global|prefix|location)$/i.test(name)),
);
const run = (command, args) => execFileSync(command, args, { cwd: root, env, stdio: ['ignore', 'inherit', 'inherit'] });

if (!existsSync(path.join(root, 'node_modules', 'typescript', 'package.json'))) {
  process.stderr.write('monitor-mcp: installing its dependencies (npm ci) to build it\n');
  // --ignore-scripts: this very script must not run again inside it.
  if (npm) run(process.execPath, [npm, 'ci', '--ignore-scripts', '--no-audit', '--no-fund']);
  else run(process.platform === 'win32' ? 'npm.cmd' : 'npm', ['ci', '--ignore-scripts', '--no-audit', '--no-fund']);
}
run(process.execPath, [path.join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', root]);
