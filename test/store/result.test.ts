import { rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { TaskRecord } from '../../src/store/records.js';
import { envelopeOf, previewOf, provenanceOf, wholeOutput } from '../../src/store/result.js';
import { makeTempDir } from '../helpers/client.js';

const dirs: string[] = [];
afterEach(async () => {
  await Promise.all(dirs.splice(0).map((d) => rm(d, { recursive: true, force: true })));
});

async function fileWith(name: string, text: string): Promise<string> {
  const dir = await makeTempDir();
  dirs.push(dir);
  const file = path.join(dir, name);
  await writeFile(file, text);
  return file;
}

const record = (fields: Partial<TaskRecord>): TaskRecord => ({
  index: 0,
  state: 'succeeded',
  attempt: 1,
  finishedAt: new Date().toISOString(),
  ...fields,
});

describe('envelopeOf', () => {
  it('reads the envelope every kind writes', () => {
    expect(envelopeOf(record({ value: { text: 'hi', cut: true, tokens_in: 3 }, files: { output: '/o' } }))).toEqual({
      text: 'hi',
      cut: true,
      outputFile: '/o',
    });
    expect(envelopeOf(record({ value: { json: { a: 1 } } }))).toEqual({ json: { a: 1 }, cut: false });
    expect(envelopeOf(record({}))).toEqual({ cut: false });
  });

  it('ignores fields of the wrong type instead of trusting them', () => {
    const damaged = { ...record({}), value: { text: 42, cut: 'yes' } } as unknown as TaskRecord;
    expect(envelopeOf(damaged)).toEqual({ cut: false });
    expect(envelopeOf({ value: ['not', 'an', 'object'] } as unknown as TaskRecord)).toEqual({ cut: false });
  });

  it('maps records written before the envelope', () => {
    expect(envelopeOf(record({ value: { text: 'a', text_cut: true }, files: { answer: '/a' } }))).toEqual({
      text: 'a',
      cut: true,
      outputFile: '/a',
    });
    expect(
      envelopeOf(record({ value: { text: 's', truncated: { stdout: true, stderr: false } }, files: { stdout: '/s' } })),
    ).toEqual({ text: 's', cut: true, outputFile: '/s' });
    expect(
      envelopeOf(
        record({ value: { text: 'b', status: 200, url: 'http://x/', truncated: true }, files: { body: '/b' } }),
      ),
    ).toEqual({ text: 'b', cut: true, outputFile: '/b' });
  });

  it("does not take the LLM kind's max_tokens cut for a cut preview", () => {
    expect(envelopeOf(record({ value: { text: 'half an answer', truncated: true, finish_reason: 'length' } }))).toEqual(
      {
        text: 'half an answer',
        cut: false,
      },
    );
  });

  it('prefers files.output over the older file names', () => {
    expect(envelopeOf(record({ files: { output: '/new', stdout: '/old', stderr: '/e' } })).outputFile).toBe('/new');
  });
});

describe('wholeOutput', () => {
  it('gives the JSON re-serialised when the value holds it', async () => {
    const out = await wholeOutput(record({ value: { json: { a: [1] } }, files: { output: '/nowhere' } }), 100);
    expect(out).toEqual({ text: JSON.stringify({ a: [1] }, null, 1), json: { a: [1] }, cut: false });
  });

  it('reads the output file, at most maxBytes of it', async () => {
    const file = await fileWith('0.out', 'x'.repeat(50) + '\n');
    expect(await wholeOutput(record({ value: { text: 'xx', cut: true }, files: { output: file } }), 1000)).toEqual({
      text: 'x'.repeat(50),
      cut: false,
    });
    expect(await wholeOutput(record({ value: { text: 'xx', cut: true }, files: { output: file } }), 10)).toEqual({
      text: 'x'.repeat(10),
      cut: true,
    });
  });

  it('parses an output file that holds JSON', async () => {
    const file = await fileWith('0.stdout', '{"big": true}\n');
    expect(
      await wholeOutput(record({ value: { text: '{"bi', truncated: { stdout: true } }, files: { stdout: file } }), 100),
    ).toEqual({
      text: '{"big": true}',
      json: { big: true },
      cut: false,
    });
  });

  it('falls back to the preview when the file is gone', async () => {
    const out = await wholeOutput(
      record({ value: { text: 'start', cut: true }, files: { output: '/no/such/file' } }),
      100,
    );
    expect(out).toEqual({ text: 'start', cut: true });
  });

  it('serialises a value without text, and gives nothing for no value', async () => {
    expect(await wholeOutput(record({ value: { exit_code: 0 } }), 100)).toEqual({
      text: '{"exit_code":0}',
      cut: false,
    });
    expect(await wholeOutput(record({}), 100)).toEqual({ text: '', cut: false });
  });
});

describe('previewOf', () => {
  it('shows text, else JSON, else the stderr tail, bounded', () => {
    expect(previewOf(record({ value: { text: 'abcdef' } }), 3)).toBe('abc…');
    expect(previewOf(record({ value: { json: { a: 1 } } }), 100)).toBe('{"a":1}');
    expect(previewOf(record({ value: { stderr_tail: 'boom' } }), 100)).toBe('boom');
    expect(previewOf(record({ value: { exit_code: 1 } }), 100)).toBeUndefined();
  });
});

describe('provenanceOf', () => {
  it('names a result by its label, else its index', () => {
    expect(provenanceOf(record({ label: 'a.ts' }))).toBe('a.ts');
    expect(provenanceOf(record({ index: 4 }))).toBe('task #4');
  });
});
