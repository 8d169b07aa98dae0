import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { repoRoot } from './helpers/client.js';

/**
 * The layers of DESIGN.md, checked on the sources' import lines (type-only imports included: a
 * type import is a dependency too).
 */
const src = path.join(repoRoot, 'src');

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) return sourceFiles(full);
    return entry.name.endsWith('.ts') ? [full] : [];
  });
}

/** Module (path relative to src, e.g. `engine/engine.ts`) → what it imports: other modules, or package names. */
function importGraph(): Map<string, { internal: string[]; external: string[] }> {
  const graph = new Map<string, { internal: string[]; external: string[] }>();
  for (const file of sourceFiles(src)) {
    const text = readFileSync(file, 'utf8');
    const internal = new Set<string>();
    const external = new Set<string>();
    for (const match of text.matchAll(
      /(?:^|\n)\s*(?:import|export)\b[^'"`;]*?\bfrom\s+['"]([^'"]+)['"]|\bimport\s*\(\s*['"]([^'"]+)['"]\s*\)|(?:^|\n)\s*import\s+['"]([^'"]+)['"]/g,
    )) {
      const spec = match[1] ?? match[2] ?? match[3] ?? '';
      if (spec.startsWith('.'))
        internal.add(path.relative(src, path.resolve(path.dirname(file), spec)).replace(/\.js$/, '.ts'));
      else external.add(spec);
    }
    graph.set(path.relative(src, file), { internal: [...internal], external: [...external] });
  }
  return graph;
}

function cycles(graph: Map<string, { internal: string[] }>): string[][] {
  const found: string[][] = [];
  const state = new Map<string, 'open' | 'done'>();
  const stack: string[] = [];
  const visit = (node: string): void => {
    state.set(node, 'open');
    stack.push(node);
    for (const next of graph.get(node)?.internal ?? []) {
      if (state.get(next) === 'open') found.push([...stack.slice(stack.indexOf(next)), next]);
      else if (state.get(next) === undefined) visit(next);
    }
    stack.pop();
    state.set(node, 'done');
  };
  for (const node of graph.keys()) if (state.get(node) === undefined) visit(node);
  return found;
}

const graph = importGraph();
const kinds = readdirSync(path.join(src, 'pools'), { withFileTypes: true })
  .filter((e) => e.isDirectory())
  .map((e) => e.name);
const kindOf = (module: string): string | undefined => /^pools\/([^/]+)\//.exec(module)?.[1];
const under = (module: string, ...prefixes: string[]): boolean =>
  prefixes.some((p) => module === p || module.startsWith(`${p}/`));

/** A module's code without its comments (comments may name anything). */
const codeOf = (module: string): string =>
  readFileSync(path.join(src, module), 'utf8').replace(/\/\*[\s\S]*?\*\/|\/\/[^\n]*/g, '');

/** Every edge `from → to` for which `bad` holds, as readable lines. */
function edges(bad: (from: string, to: string) => boolean): string[] {
  const out: string[] = [];
  for (const [from, { internal, external }] of graph)
    for (const to of [...internal, ...external]) if (bad(from, to)) out.push(`${from} → ${to}`);
  return out;
}

describe('architecture', () => {
  it('has no import cycles', () => {
    expect(cycles(graph).map((c) => c.join(' → '))).toEqual([]);
  });

  it('keeps MCP in tools/ and above: engine, store, pools, config and the OS adapters never import the SDK or a tool', () => {
    const low = (m: string): boolean =>
      under(m, 'engine', 'store', 'pools', 'config', 'platform') ||
      ['errors.ts', 'log.ts', 'paths.ts', 'processes.ts'].includes(m);
    expect(
      edges(
        (from, to) =>
          low(from) &&
          (to.startsWith('@modelcontextprotocol/') || under(to, 'tools') || /^server(-[a-z]+)?\.ts$/.test(to)),
      ),
    ).toEqual([]);
  });

  it('lets layers point down only: store knows no engine, the engine knows no pool, leaves import nothing of ours', () => {
    expect(
      edges((from, to) => under(from, 'store') && (under(to, 'engine', 'pools', 'tools') || to === 'registry.ts')),
    ).toEqual([]);
    expect(edges((from, to) => under(from, 'engine') && (under(to, 'pools', 'tools') || to === 'registry.ts'))).toEqual(
      [],
    );
    // …but the one terminal escape (terminal.ts, itself a leaf), which log lines use too.
    const leaves = ['errors.ts', 'log.ts', 'terminal.ts'];
    expect(
      edges((from, to) => leaves.includes(from) && !to.includes('/') && graph.has(to) && to !== 'terminal.ts'),
    ).toEqual([]);
    // The OS adapters serve every layer: they import no layer above them.
    expect(
      edges(
        (from, to) => ['processes.ts', 'paths.ts'].includes(from) && under(to, 'engine', 'store', 'pools', 'tools'),
      ),
    ).toEqual([]);
    expect(
      edges((from, to) => under(from, 'platform') && graph.has(to) && !under(to, 'platform') && to !== 'paths.ts'),
    ).toEqual([]);
  });

  it('has no arrow running back up: each module imports only modules of its own layer or below', () => {
    // Bottom to top, as DESIGN.md draws them; the top layer wires everything together.
    const layers: Array<(m: string) => boolean> = [
      (m) => ['errors.ts', 'log.ts', 'terminal.ts'].includes(m),
      (m) => under(m, 'platform') || ['paths.ts', 'processes.ts'].includes(m),
      (m) => under(m, 'config'),
      (m) => under(m, 'store'),
      (m) => under(m, 'engine'),
      (m) => under(m, 'pools'),
      (m) => under(m, 'tools'),
    ];
    const layerOf = (m: string): number => {
      const at = layers.findIndex((inLayer) => inLayer(m));
      return at === -1 ? layers.length : at;
    };
    expect(edges((from, to) => graph.has(to) && layerOf(to) > layerOf(from))).toEqual([]);
  });

  it('asks the platform module alone what system it runs on: nothing else tests process.platform, reads /proc or sends a raw signal to a group', () => {
    const offenders: string[] = [];
    for (const [module] of graph) {
      if (under(module, 'platform')) continue;
      // Comments may name them; code may not.
      const code = readFileSync(path.join(src, module), 'utf8').replace(/\/\*[\s\S]*?\*\/|\/\/[^\n]*/g, '');
      // The CLI, the one module that touches `process`, hands process.platform in once.
      const platformTests = [...code.matchAll(/process\.platform|\bos\.platform\(/g)].length;
      if (platformTests > (module === 'cli.ts' ? 1 : 0)) offenders.push(`${module}: process.platform`);
      if (/['"`]\/proc\b/.test(code)) offenders.push(`${module}: /proc`);
      if (/kill\(\s*-/.test(code)) offenders.push(`${module}: kill(-pgid)`);
      // Workers start with the platform's spawn options; the CLI's browser and the spawn helper
      // (created only where the platform says it pays: Linux) are no workers.
      if (/detached:\s*true/.test(code) && !['cli.ts', 'pools/script/spawn-helper.ts'].includes(module))
        offenders.push(`${module}: detached: true`);
    }
    expect(offenders).toEqual([]);
  });

  it("keeps each worker kind in its folder: kinds import no other kind, and only the registry and that kind's tool files import it", () => {
    expect(
      edges((from, to) => kindOf(from) !== undefined && kindOf(to) !== undefined && kindOf(from) !== kindOf(to)),
    ).toEqual([]);
    expect(
      edges(
        (from, to) =>
          kindOf(to) !== undefined && kindOf(from) === undefined && from !== 'registry.ts' && !under(from, 'tools'),
      ),
    ).toEqual([]);
    // A tool file drives one kind at most.
    for (const [from, { internal }] of graph) {
      if (!under(from, 'tools')) continue;
      expect(new Set(internal.map(kindOf).filter((k) => k !== undefined)).size, from).toBeLessThanOrEqual(1);
    }
    // Nothing outside a kind's folder (its tool files and the registry aside) names it: not as a
    // string ('llm', "llm", `llm`), not as a property (`pools.llm`, `config.script`), and no code
    // names a kind's tools (the demo, the prompts and `new-worker`, which tell a client or a user
    // which calls to make, aside).
    const kindTools = new Map(
      kinds.map((kind) => [
        kind,
        [...graph]
          .filter(([from, { internal }]) => under(from, 'tools') && internal.some((to) => kindOf(to) === kind))
          .flatMap(([from]) => [...readFileSync(path.join(src, from), 'utf8').matchAll(/\bname:\s*'([a-z_]+)'/g)])
          .map((match) => match[1] ?? ''),
      ]),
    );
    const named: string[] = [];
    for (const [module] of graph) {
      if (kindOf(module) !== undefined || under(module, 'tools') || module === 'registry.ts') continue;
      const code = codeOf(module);
      for (const kind of kinds) {
        if (new RegExp(`(['"\`])${kind}\\1|\\.${kind}\\b`).test(code)) named.push(`${module} names the kind '${kind}'`);
        const tellsCalls =
          module === 'demo.ts' ||
          under(module, 'prompts') ||
          /^commands\/(new-worker|worker-templates)\.ts$/.test(module);
        for (const tool of tellsCalls ? [] : (kindTools.get(kind) ?? []))
          if (code.includes(tool)) named.push(`${module} names ${kind}'s tool ${tool}`);
      }
    }
    expect(named).toEqual([]);
  });

  it("has tools import a kind through its index.ts only, never the kind's insides", () => {
    expect(
      edges((from, to) => under(from, 'tools') && kindOf(to) !== undefined && !/^pools\/[^/]+\/index\.ts$/.test(to)),
    ).toEqual([]);
  });

  it("leaves the state directory's file names to store/: no module outside it writes them in code", async () => {
    const { default: ts } = await import('typescript');
    // A file of the layout (job.json, owner.<N>…) named in a string, or a folder of it (jobs/,
    // live/…) as a path: in a path.join/resolve, or a literal path (`jobs/…`, `${dir}/live/`).
    // Prose (a help text) has spaces; import paths are modules.
    const fileName = /(?:^|[\\/])(?:job\.json|results\.jsonl|inputs\.jsonl|runs\.log|changes\.log|owner\.(?:\d+|$))$/;
    const folders = ['jobs', 'out', 'live', 'control', 'pids'];
    const folderPath = new RegExp(`^(?:${folders.join('|')})/|/(?:${folders.join('|')})/$`);
    const offenders: string[] = [];
    for (const [module] of graph) {
      if (under(module, 'store')) continue;
      const text = readFileSync(path.join(src, module), 'utf8');
      const source = ts.createSourceFile(module, text, ts.ScriptTarget.Latest, true);
      const visit = (node: import('typescript').Node): void => {
        const parent = node.parent as import('typescript').Node | undefined;
        const modulePath = parent !== undefined && (ts.isImportDeclaration(parent) || ts.isExportDeclaration(parent));
        if ((ts.isStringLiteralLike(node) || ts.isTemplateLiteralToken(node)) && !modulePath) {
          const literal = node.text;
          if (fileName.test(literal) || (!/\s/.test(literal) && folderPath.test(literal)))
            offenders.push(`${module}: '${literal}'`);
        }
        if (ts.isCallExpression(node) && /\b(?:join|resolve)$/.test(node.expression.getText(source)))
          for (const arg of node.arguments)
            if (ts.isStringLiteralLike(arg) && folders.includes(arg.text))
              offenders.push(`${module}: path with '${arg.text}'`);
        ts.forEachChild(node, visit);
      };
      visit(source);
    }
    expect(offenders).toEqual([]);
  });
});
