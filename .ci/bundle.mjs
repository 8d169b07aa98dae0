// `npm run bundle`: builds monitor-mcp-<version>.mcpb in the repository root, an MCP Bundle Claude
// Desktop installs with a double-click. Its manifest lists the tools and prompts the built server
// itself answers (tools/list, prompts/list), so they never drift; its node_modules holds the
// production dependencies only, copied from this checkout's node_modules as the lockfile names them
// (no network). Checked and packed with the official tooling (@anthropic-ai/mcpb).
// test/bundle.test.ts builds one, unpacks it and starts it as the manifest says.
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { LATEST_MANIFEST_VERSION, packExtension, validateManifest } from '@anthropic-ai/mcpb';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { InMemoryTransport } from '@modelcontextprotocol/sdk/inMemory.js';
import { ErrorCode, McpError } from '@modelcontextprotocol/sdk/types.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/**
 * What the user sets in Claude Desktop, and how it reaches the server. Folders go in the arguments
 * (a list the user picked is expanded into separate arguments after `--root`, which takes them
 * all); the rest goes through the environment, where an empty optional value becomes an empty
 * variable the server ignores (in the arguments it would stay a literal `${user_config.…}`).
 */
export const USER_CONFIG = {
  allowed_directories: {
    type: 'directory',
    title: 'Allowed folders',
    description:
      'Folders the workers may read and run in: script working folders, files sent to the local model, what local agents read. Pick your projects.',
    multiple: true,
    required: true,
  },
  llm_endpoints: {
    type: 'string',
    title: 'LLM endpoints',
    description:
      'OpenAI-compatible servers (LM Studio, llama-server, Ollama, vLLM) as [NAME=]URL[@N], separated by commas or spaces, e.g. "lmstudio=http://127.0.0.1:1234, gpu2=http://10.0.0.2:8080@2" (@N: at most N requests at once). Add #lmstudio to an LM Studio server not on port 1234. Empty: LM Studio at http://127.0.0.1:1234.',
    required: false,
    default: '',
  },
  lm_api_token: {
    type: 'string',
    title: 'LM Studio API token',
    description: 'Only if LM Studio requires authentication. Sent to LM Studio endpoints only; never written to jobs.',
    sensitive: true,
    required: false,
    default: '',
  },
  http_allow_hosts: {
    type: 'string',
    title: 'Allowed HTTP hosts',
    description:
      'Hosts http_batch may call, comma-separated: api.github.com, *.example.com (subdomains), 127.0.0.1:8080. Empty: none.',
    required: false,
    default: '',
  },
  http_allow_private: {
    type: 'boolean',
    title: 'Allow private addresses',
    description:
      'Let the allowed HTTP hosts resolve to this machine or the local network (loopback and private addresses).',
    required: false,
    default: false,
  },
};

export const ENTRY_POINT = 'dist/src/cli.js';

const MCP_CONFIG = {
  command: 'node',
  args: [`\${__dirname}/${ENTRY_POINT}`, '--root', '${user_config.allowed_directories}'],
  env: {
    MONITOR_ENDPOINTS: '${user_config.llm_endpoints}',
    LM_API_TOKEN: '${user_config.lm_api_token}',
    MONITOR_HTTP_ALLOW_HOSTS: '${user_config.http_allow_hosts}',
    MONITOR_HTTP_ALLOW_PRIVATE: '${user_config.http_allow_private}',
  },
};

const LONG_DESCRIPTION = `One Claude orchestrates real parallel workers on your machine: **local LLMs** (LM Studio or any OpenAI-compatible server), **pools of local scripts** and **HTTP APIs**, through durable jobs. Every dispatch tool returns a job handle at once; \`collect_results\` pages the results so they fit the conversation.

The bundled workers need **Python 3** (\`python3\` on the PATH). Pick the folders the workers may read; the LLM endpoints default to LM Studio at http://127.0.0.1:1234.`;

/** The tools and prompts as a client lists them from the built server in `root` (nothing is started). */
export async function serverFacts(root = repoRoot) {
  const dist = (file) => import(pathToFileURL(path.join(root, 'dist', 'src', file)).href);
  const [{ parseConfig }, { createServer }, { processControl }] = await Promise.all([
    dist('registry.js'),
    dist('server.js'),
    dist('processes.js'),
  ]);
  const config = parseConfig({
    argv: ['--state-dir', path.join(tmpdir(), 'monitor-mcp-bundle-unused')],
    env: {},
    home: path.join(tmpdir(), 'monitor-mcp-bundle-home'),
    cpus: 1,
    packageRoot: root,
    cwd: root,
  });
  const app = createServer(config, { processes: processControl(process.pid, () => undefined) });
  const [clientSide, serverSide] = InMemoryTransport.createLinkedPair();
  await app.server.connect(serverSide);
  const client = new Client({ name: 'monitor-mcp-bundle', version: '0.0.0' });
  await client.connect(clientSide);
  try {
    const { tools } = await client.listTools();
    return { tools, prompts: await manifestPrompts(client) };
  } finally {
    await client.close();
    await app.close();
  }
}

/**
 * The prompts for the manifest. Their text is written by the server when one is used (it lists the
 * folder's files then), so the manifest's `text` says what the prompt does with its arguments as
 * `${arguments.NAME}` placeholders: the same on every machine that builds the bundle.
 */
async function manifestPrompts(client) {
  let prompts;
  try {
    ({ prompts } = await client.listPrompts());
  } catch (error) {
    // A server without prompts answers "method not found": it has none to list.
    if (error instanceof McpError && error.code === ErrorCode.MethodNotFound) return [];
    throw error;
  }
  return prompts.map((prompt) => {
    const names = (prompt.arguments ?? []).map((a) => a.name);
    const about = prompt.description ?? prompt.title ?? prompt.name;
    return {
      name: prompt.name,
      description: about,
      ...(names.length > 0 ? { arguments: names } : {}),
      text: [about, ...names.map((name) => `${name}: \${arguments.${name}}`)].join('\n'),
    };
  });
}

/** The manifest for package.json `pkg` and the server's facts. */
export function bundleManifest(pkg, facts) {
  const author = typeof pkg.author === 'string' ? { name: pkg.author } : pkg.author;
  const repository = typeof pkg.repository === 'string' ? { type: 'git', url: pkg.repository } : pkg.repository;
  return {
    manifest_version: LATEST_MANIFEST_VERSION,
    name: pkg.name,
    display_name: 'monitor-mcp',
    version: pkg.version,
    description: pkg.description,
    long_description: LONG_DESCRIPTION,
    author: author ?? { name: `${pkg.name} contributors` },
    ...(repository ? { repository: { type: repository.type ?? 'git', url: repository.url } } : {}),
    ...(pkg.homepage ? { homepage: pkg.homepage } : {}),
    license: pkg.license,
    keywords: ['parallel', 'jobs', 'local llm', 'lm studio', 'workers', 'batch'],
    screenshots: ['docs/dashboard.png'],
    server: { type: 'node', entry_point: ENTRY_POINT, mcp_config: MCP_CONFIG },
    tools: facts.tools.map((t) => ({ name: t.name, description: t.title ?? t.description ?? t.name })),
    prompts: facts.prompts,
    compatibility: {
      platforms: ['darwin', 'win32', 'linux'],
      runtimes: { node: pkg.engines?.node ?? '>=20.18' },
    },
    user_config: USER_CONFIG,
  };
}

/** The production packages of the lockfile (`node_modules/…` paths), every one present in `root`. */
export function productionPackages(root = repoRoot) {
  const lock = JSON.parse(readFileSync(path.join(root, 'package-lock.json'), 'utf8'));
  const packages = Object.entries(lock.packages ?? {})
    .filter(([where, entry]) => where.startsWith('node_modules/') && !entry.dev && !entry.devOptional)
    .map(([where, entry]) => ({ where, optional: entry.optional === true }))
    .filter(({ where, optional }) => {
      if (existsSync(path.join(root, where))) return true;
      // An optional package for another system (fsevents on Linux) is simply absent.
      if (optional) return false;
      throw new Error(`${where} is missing from node_modules: run npm ci first.`);
    });
  return packages.map(({ where }) => where);
}

/** The bundle's tree in `stage`: what package.json `files` ships, package.json, and the production node_modules. */
function stageTree(root, stage, pkg) {
  const skip = (source) => /(^|[\\/])(__pycache__|\.DS_Store)$|\.map$/.test(source);
  for (const entry of [...(pkg.files ?? []), 'package.json', 'LICENSE']) {
    const from = path.join(root, entry);
    if (!existsSync(from)) continue;
    cpSync(from, path.join(stage, entry), { recursive: true, filter: (source) => !skip(source) });
  }
  for (const where of productionPackages(root)) {
    const from = path.join(root, where);
    const nested = path.join(from, 'node_modules');
    // A package's own node_modules holds packages the lockfile lists on their own (dev ones too).
    cpSync(from, path.join(stage, where), {
      recursive: true,
      filter: (source) => source !== nested && !source.startsWith(`${nested}${path.sep}`),
    });
  }
}

/**
 * Builds the bundle: `out` (default monitor-mcp-<version>.mcpb in the root) from the built dist/
 * of `root`. Returns its path, size and manifest.
 */
export async function buildBundle({ root = repoRoot, out } = {}) {
  if (!existsSync(path.join(root, ENTRY_POINT))) throw new Error(`${ENTRY_POINT} is missing: run \`npx tsc -p .\``);
  const pkg = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8'));
  const file = out ?? path.join(root, `${pkg.name}-${pkg.version}.mcpb`);
  const manifest = bundleManifest(pkg, await serverFacts(root));
  const stage = mkdtempSync(path.join(tmpdir(), 'monitor-mcp-bundle-'));
  try {
    stageTree(root, stage, pkg);
    writeFileSync(path.join(stage, 'manifest.json'), `${JSON.stringify(manifest, null, 2)}\n`);
    // mcpb's own check (the same schema Claude Desktop reads the manifest with); it prints its verdict.
    if (!validateManifest(path.join(stage, 'manifest.json'))) throw new Error('mcpb validate refused the manifest');
    mkdirSync(path.dirname(file), { recursive: true });
    if (!(await packExtension({ extensionPath: stage, outputPath: file, silent: true })))
      throw new Error('mcpb pack failed');
  } finally {
    rmSync(stage, { recursive: true, force: true });
  }
  return { file, bytes: statSync(file).size, manifest };
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const started = Date.now();
  const { file, bytes, manifest } = await buildBundle();
  process.stdout.write(
    `${path.relative(process.cwd(), file)}: ${(bytes / 1024 / 1024).toFixed(1)} MB, ${manifest.tools.length} tools, ${manifest.prompts.length} prompts, in ${((Date.now() - started) / 1000).toFixed(1)} s\n`,
  );
}
