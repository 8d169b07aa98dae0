import path from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { ErrorCode, McpError } from '@modelcontextprotocol/sdk/types.js';
import { describe, expect, it } from 'vitest';
import { cleanupsAfterEach, fileTree } from '../helpers/cleanup.js';
import { connectInMemory, makeTempDir, repoRoot, testConfig, type Connected } from '../helpers/client.js';
import { promptText, schemaErrors, shownCalls } from '../helpers/prompts.js';

const cleanups = cleanupsAfterEach();

const MODULE = {
  'src/auth/token.ts': "import { createHash } from 'node:crypto';\nexport function check(t: string) { return t; }\n",
  'src/auth/session.ts': "import { check } from './token.js';\nexport const open = () => check('x');\n",
  'src/auth/README.md': '# auth\n',
  'src/auth/logo.png': '\u0089PNG\u0000\u0000',
  'src/auth/.hidden/secret.ts': 'export {};\n',
  'test/auth.test.ts': "import { open } from '../src/auth/session.js';\n",
  'empty/.keep': '',
};

/** A server whose one allowed folder holds MODULE. */
async function connect(): Promise<Connected> {
  const root = await fileTree(MODULE, cleanups, 'prompts-');
  const c = await connectInMemory(
    await testConfig((config) => {
      config.allowedRoots = [root];
    }),
  );
  cleanups.push(() => c.close());
  return c;
}

/** Each prompt with values for all its arguments. */
const ARGUMENTS: Record<string, Record<string, string>> = {
  analyse_module: { path: 'src/auth', focus: 'error handling', model: 'test-model' },
  triage_failures: { command: 'npx vitest run test/auth.test.ts', paths: 'src, test', model: 'test-model' },
  summarise_folder: { folder: 'src/auth', model: 'test-model' },
  fan_out_question: {
    files: 'src/**/*.{ts,md}, test/*.ts',
    question: 'Where are tokens checked?',
    model: 'test-model',
  },
};

/** The McpError a prompts/get answers with. */
async function refusal(c: Connected, name: string, args: Record<string, string>): Promise<McpError> {
  const error: unknown = await c.client.getPrompt({ name, arguments: args }).then(
    () => expect.fail(`prompts/get ${name} should have failed`),
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(McpError);
  expect((error as McpError).code).toBe(ErrorCode.InvalidParams);
  return error as McpError;
}

describe('prompts', () => {
  it('lists the four workflows, each with described arguments, the required ones first', async () => {
    const c = await connect();
    expect(c.client.getServerCapabilities()?.prompts).toBeDefined();
    const { prompts } = await c.client.listPrompts();
    expect(prompts.map((p) => p.name)).toEqual(Object.keys(ARGUMENTS));
    for (const prompt of prompts) {
      expect(prompt.description?.length ?? 0, prompt.name).toBeGreaterThan(60);
      expect(prompt.title, prompt.name).toBeTruthy();
      const args = prompt.arguments ?? [];
      expect(args.map((a) => a.name).sort()).toEqual(Object.keys(ARGUMENTS[prompt.name] ?? {}).sort());
      for (const arg of args) expect(arg.description, `${prompt.name}.${arg.name}`).toBeTruthy();
      // Claude Code maps a slash command's words to the arguments in order: required ones come first.
      const required = args.map((a) => a.required === true);
      expect(required).toEqual([...required].sort((a, b) => Number(b) - Number(a)));
      expect(
        args.some((a) => a.name === 'model' && a.required !== true),
        prompt.name,
      ).toBe(true);
    }
  });

  it("gets each prompt with the user's values in it; every call it shows is valid for the tool as listed", async () => {
    const c = await connect();
    for (const [name, args] of Object.entries(ARGUMENTS)) {
      const text = await promptText(c.client, name, args);
      expect(text.length, name).toBeLessThan(3000);
      const calls = shownCalls(text);
      expect(calls.length, name).toBeGreaterThanOrEqual(3);
      expect(await schemaErrors(c.client, calls), name).toEqual([]);
      // Every LLM call carries the model the user named; every prompt says what to do without an LLM.
      for (const call of calls.filter((k) => /^lmstudio_(complete|investigate)$/.test(k.tool)))
        expect(call.args.model, `${name}: ${call.tool}`).toBe('test-model');
      expect(calls.some((k) => k.tool === 'lmstudio_models')).toBe(true);
      expect(text).toMatch(/ENDPOINT_UNREACHABLE/);
      expect(calls.some((k) => k.tool === 'collect_results')).toBe(true);
    }
  });

  it('names the real files of a folder, leaving out dot-folders and binary files', async () => {
    const c = await connect();
    const calls = shownCalls(await promptText(c.client, 'summarise_folder', { folder: 'src/auth/' }));
    const stats = calls.find((k) => k.tool === 'run_script_batch');
    expect(stats?.args).toEqual({
      worker: 'code_stats.py',
      inputs: [{ args: ['src/auth/README.md', 'src/auth/logo.png', 'src/auth/session.ts', 'src/auth/token.ts'] }],
      label: 'stats of src/auth',
    });
    // The LLM gets the text files only: group packs would refuse the PNG by name.
    const llm = calls.find((k) => k.tool === 'lmstudio_complete');
    expect(llm?.args.files).toEqual(['src/auth/**/*.{md,ts}']);
    const analyse = shownCalls(await promptText(c.client, 'analyse_module', { path: 'src/auth' }));
    expect(analyse.find((k) => k.tool === 'run_script_batch')?.args.inputs).toEqual([
      { args: ['src/auth/session.ts', 'src/auth/token.ts'] },
    ]);
    expect(analyse.find((k) => k.tool === 'lmstudio_complete')?.args).toMatchObject({
      files: ['src/auth/**/*.{md,ts}'],
      group: 'all',
    });
    // A glob is passed to the LLM as it is, and there is no file list for a script.
    const globbed = shownCalls(await promptText(c.client, 'analyse_module', { path: 'src/**/*.ts' }));
    expect(globbed.find((k) => k.tool === 'lmstudio_complete')?.args.files).toEqual(['src/**/*.ts']);
    expect(globbed.some((k) => k.tool === 'run_script_batch' && k.args.worker === 'analyze_dependencies.py')).toBe(
      false,
    );
  });

  it('keeps hostile values inside their JSON strings: quotes, backticks, braces and line breaks', async () => {
    const c = await connect();
    const question = 'Is "x" `y` {{content}} used?\nAnd ``` here?';
    const text = await promptText(c.client, 'fan_out_question', { files: 'src/**/*.ts', question });
    // No backtick of the value reaches the text: each shown call is one code span.
    expect(text).not.toContain('`y`');
    const calls = shownCalls(text);
    expect(await schemaErrors(c.client, calls)).toEqual([]);
    const template = String(calls[0]?.args.template);
    expect(template).toContain('Is "x" `y` { {content} } used?\nAnd ``` here?');
    // The question cannot add a placeholder: the template's own are the only ones.
    expect([...template.matchAll(/\{\{(\w+)\}\}/g)].map((m) => m[1])).toEqual(['path', 'content']);
    expect(String(calls[0]?.args.reduce)).toContain(question);
    // Split as a shell would: quotes and backslashes; a backtick inside single quotes is a plain character.
    const command = 'node -e \'console.log("`hi`")\' "a b" c\\ d';
    const triage = shownCalls(await promptText(c.client, 'triage_failures', { command }));
    expect(triage[0]?.args).toMatchObject({
      command: 'node',
      inputs: [{ args: ['-e', 'console.log("`hi`")', 'a b', 'c d'] }],
    });
    // A command that needs a shell is not offered to run_script_batch, which runs none.
    const piped = shownCalls(await promptText(c.client, 'triage_failures', { command: 'npm test | tee log' }));
    expect(piped.some((k) => k.tool === 'run_script_batch' && k.args.command !== undefined)).toBe(false);
  });

  it('refuses an unknown prompt, a missing, unknown, over-long or multi-line argument, saying what to do', async () => {
    const c = await connect();
    expect((await refusal(c, 'analyse_modul', {})).message).toMatch(
      /Unknown prompt "analyse_modul" \(did you mean "analyse_module"\?\)\. Next: The prompts are analyse_module, triage_failures, summarise_folder, fan_out_question/,
    );
    expect((await refusal(c, 'analyse_module', {})).message).toMatch(
      /needs "path" \(The module: a folder, a file or a glob\)\. Next: Call prompts\/get "analyse_module" with path="src\/auth" \(in Claude Code: \/mcp__monitor__analyse_module src\/auth\)/,
    );
    expect((await refusal(c, 'fan_out_question', { files: '  ', question: '' })).message).toMatch(
      /needs "files" .* and "question"/,
    );
    expect((await refusal(c, 'analyse_module', { path: 'src/auth', modle: 'x' })).message).toMatch(
      /no argument "modle" \(did you mean "model"\?\)/,
    );
    expect((await refusal(c, 'analyse_module', { path: 'a'.repeat(501) })).message).toMatch(
      /"path" is 501 characters long, over 500/,
    );
    expect((await refusal(c, 'summarise_folder', { folder: 'src\nauth' })).message).toMatch(/line break/);
    expect((await refusal(c, 'fan_out_question', { files: 'a', question: 'why\u0000' })).message).toMatch(
      /control character/,
    );
  });

  it('refuses a folder that is missing, outside the allowed folders, a file or empty, before showing any call', async () => {
    const c = await connect();
    expect((await refusal(c, 'summarise_folder', { folder: 'src/nope' })).message).toMatch(
      /No such folder or file: src\/nope\. Next: Paths are resolved against /,
    );
    expect((await refusal(c, 'analyse_module', { path: '/etc' })).message).toMatch(
      /The folder or file "\/etc" resolves outside the allowed folders\. Next: Use a path inside .* --root/,
    );
    expect((await refusal(c, 'summarise_folder', { folder: 'src/auth/token.ts' })).message).toMatch(
      /is a file, not a folder/,
    );
    expect((await refusal(c, 'summarise_folder', { folder: 'empty' })).message).toMatch(/holds no files/);
    expect((await refusal(c, 'summarise_folder', { folder: 'src/*' })).message).toMatch(/is a glob/);
  });

  it('answers prompts/list and prompts/get over stdio from the built server', { timeout: 30_000 }, async () => {
    const stateDir = await makeTempDir('monitor-prompts-');
    cleanups.push(async () => {
      const { rm } = await import('node:fs/promises');
      await rm(stateDir, { recursive: true, force: true });
    });
    const transport = new StdioClientTransport({
      command: process.execPath,
      args: [path.join(repoRoot, 'dist', 'src', 'cli.js'), '--state-dir', stateDir, '--root', repoRoot],
      cwd: repoRoot,
      stderr: 'pipe',
    });
    const client = new Client({ name: 'prompts-e2e', version: '0.0.0' });
    await client.connect(transport);
    try {
      const { prompts } = await client.listPrompts();
      expect(prompts.map((p) => p.name)).toEqual(Object.keys(ARGUMENTS));
      const text = await promptText(client, 'summarise_folder', { folder: 'workers' });
      expect(shownCalls(text)[0]?.args.inputs).toEqual([
        { args: expect.arrayContaining(['workers/code_stats.py', 'workers/outline.py']) as unknown },
      ]);
      await expect(client.getPrompt({ name: 'nope' })).rejects.toThrow(/Unknown prompt "nope"/);
    } finally {
      await client.close();
    }
  });
});
