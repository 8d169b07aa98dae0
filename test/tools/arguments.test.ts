import * as z from 'zod';
import { describe, expect, it } from 'vitest';
import { KINDS } from '../../src/registry.js';
import type { AnyTool } from '../../src/tools/tool.js';
import {
  closest,
  fileArgumentsPhrase,
  inputJsonSchema,
  MAX_ARGUMENT_DEPTH,
  nestsDeeper,
  parseArguments,
} from '../../src/tools/arguments.js';

const shape = {
  inputs: z
    .array(z.strictObject({ args: z.array(z.string()).optional() }))
    .min(1, { error: 'inputs is empty' })
    .describe('The tasks.'),
  timeout_seconds: z.number().positive().optional().describe('Per task.'),
  concurrency: z.number().int().min(1).optional(),
};

describe('tool arguments', () => {
  it('refuses arguments nested deeper than the limit before anything recursive meets them, naming where', () => {
    const json = z.object({ inputs: z.array(z.object({ json: z.unknown() })) });
    let deep: unknown = 1;
    for (let i = 0; i < 100_000; i++) deep = { a: deep };
    expect(() => parseArguments('run', json.shape, { inputs: [{ json: deep }] })).toThrow(
      /^Invalid arguments for run: inputs\[0\]\.json\.a\.a.*… nests deeper than 64 levels\.$/,
    );
    let fine: unknown = 1;
    for (let i = 0; i < MAX_ARGUMENT_DEPTH - 3; i++) fine = [fine];
    expect(parseArguments('run', json.shape, { inputs: [{ json: fine }] }).inputs).toHaveLength(1);
  });

  it('measures the nesting of JSON text without parsing it: strings and escapes are text', () => {
    const nested = (n: number): string => `${'['.repeat(n)}${']'.repeat(n)}`;
    expect(nestsDeeper(nested(50_000), 64)).toBe(true);
    expect(nestsDeeper(nested(64), 64)).toBe(false);
    expect(nestsDeeper(nested(65), 64)).toBe(true);
    expect(nestsDeeper(`{"a": "${'['.repeat(100)}", "b": [[1]]}`, 3)).toBe(false);
    expect(nestsDeeper(JSON.stringify({ a: `\\" ${'{'.repeat(100)}` }), 3)).toBe(false);
    expect(nestsDeeper(String.raw`[{"a": "\\"}, [[[[1]]]]]`, 4)).toBe(true);
    // A line the file forms refuse is one the inline check refuses too, and the other way round.
    const lineLimit = MAX_ARGUMENT_DEPTH - 2;
    const json = z.object({ inputs: z.array(z.object({ json: z.unknown() })) });
    const element = (n: number): unknown => JSON.parse(`{"json": ${nested(n - 1)}}`);
    expect(() => parseArguments('run', json.shape, { inputs: [element(lineLimit)] })).not.toThrow();
    expect(() => parseArguments('run', json.shape, { inputs: [element(lineLimit + 1)] })).toThrow(/nests deeper/);
    expect(nestsDeeper(JSON.stringify(element(lineLimit)), lineLimit)).toBe(false);
    expect(nestsDeeper(JSON.stringify(element(lineLimit + 1)), lineLimit)).toBe(true);
  });

  it('passes good arguments through, and takes missing arguments as none', () => {
    expect(parseArguments('t', shape, { inputs: [{ args: ['a'] }], timeout_seconds: 5 })).toEqual({
      inputs: [{ args: ['a'] }],
      timeout_seconds: 5,
    });
    expect(() => parseArguments('t', shape, undefined)).toThrow(/inputs is required/);
  });

  it('names an unknown argument with what was probably meant, and every problem with its place', () => {
    try {
      parseArguments('run', shape, { inputs: [{ args: 'x', argz: [] }], timeout: 1, concurency: 0 });
      expect.unreachable();
    } catch (error) {
      const { code, message, hint } = error as { code: string; message: string; hint: string };
      expect(code).toBe('INVALID_INPUT');
      expect(message).toContain('inputs[0].args: Invalid input: expected array, received string');
      expect(message).toContain('unknown argument "argz"');
      expect(message).toContain('unknown argument "timeout" (did you mean "timeout_seconds"?)');
      expect(message).toContain('unknown argument "concurency" (did you mean "concurrency"?)');
      expect(hint).toMatch(
        /call run again \(nothing was started\)\. inputs: The tasks\. .*Its arguments: inputs, timeout_seconds, concurrency\./,
      );
    }
  });

  it('suggests only names that are close', () => {
    expect(closest('timeout', ['timeout_seconds', 'cwd'])).toBe('timeout_seconds');
    expect(closest('wait_second', ['wait_seconds', 'label'])).toBe('wait_seconds');
    expect(closest('lable', ['label', 'cwd'])).toBe('label');
    expect(closest('banana', ['label', 'cwd'])).toBeUndefined();
  });

  it('lists a lean, strict JSON schema', () => {
    const schema = inputJsonSchema({
      ...shape,
      env: z.record(z.string(), z.string()).optional(),
      any: z.record(z.string(), z.unknown()).optional(),
    });
    expect(schema.$schema).toBeUndefined();
    expect(schema.additionalProperties).toBe(false);
    const text = JSON.stringify(schema);
    expect(text).not.toContain(String(Number.MAX_SAFE_INTEGER));
    expect(text).not.toContain('propertyNames');
    expect(schema.properties).toMatchObject({
      env: { type: 'object', additionalProperties: { type: 'string' } },
      any: { type: 'object' },
    });
  });
});

describe('fileArgumentsPhrase', () => {
  it("names every registered tool's *_file arguments, read from the schemas", () => {
    const tools = KINDS.flatMap(({ tools }): readonly AnyTool[] => tools);
    expect(fileArgumentsPhrase(tools)).toBe(
      "run_script_batch's inputs_file, lmstudio_complete's prompts_file or items_file, lmstudio_investigate's tasks_file, http_batch's requests_file",
    );
  });

  it('leaves out tools without a file form', () => {
    expect(fileArgumentsPhrase([{ name: 'a', inputSchema: { x: z.string() } }])).toBe('');
  });
});
