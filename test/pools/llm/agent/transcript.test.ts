import { appendFile, readFile, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { Transcript } from '../../../../src/pools/llm/agent/transcript.js';
import { makeTempDir } from '../../../helpers/client.js';

describe('Transcript', () => {
  it('appends lines in order, owner-only, and reads them back dropping a line a crash cut', async () => {
    const file = path.join(await makeTempDir('transcript-'), '0.transcript.jsonl');
    const transcript = new Transcript(file);
    await Promise.all([
      transcript.append({ type: 'start', task: 't', model: 'm', tools: ['grep'], at: 'now' }),
      transcript.append({ type: 'note', step: 0, kind: 'protocol', text: 'described in the prompt' }),
    ]);
    await appendFile(file, '{"type":"request","step":1,"cont');
    expect(((await stat(file)).mode & 0o777).toString(8)).toBe('600');
    const lines = await Transcript.read(file);
    expect(lines.map((l) => l.type)).toEqual(['start', 'note']);
    // Started over with what was whole: the next line does not join the cut one.
    await Transcript.rewrite(file, lines);
    await transcript.append({ type: 'note', step: 1, kind: 'last_call', text: 'finish now' });
    expect((await Transcript.read(file)).map((l) => l.type)).toEqual(['start', 'note', 'note']);
    expect((await readFile(file, 'utf8')).endsWith('\n')).toBe(true);
  });

  it('reads nothing from a file that is not there', async () => {
    expect(await Transcript.read(path.join(await makeTempDir('transcript-'), 'none.jsonl'))).toEqual([]);
  });

  it('reads a planted or damaged transcript as untrusted: the replay ends at the first line that does not check out', async () => {
    const file = path.join(await makeTempDir('transcript-'), '0.transcript.jsonl');
    const good = { type: 'request', step: 1, tokens_in: 5, tokens_out: 2, content: 'ok', reading: 'calls' };
    const hostile = [
      { ...good, step: 2, calls: 'read_file /etc/passwd' },
      { ...good, step: 'two' },
      { ...good, step: 2, calls: [{ id: 'c', name: 'read_file', args: ['not', 'an', 'object'] }] },
      { ...good, step: 2, reading: 'run_shell' },
      { type: 'note', step: 2, kind: 'protocol' },
    ];
    for (const line of hostile) {
      await writeFile(
        file,
        `${JSON.stringify(good)}\n${JSON.stringify(line)}\n${JSON.stringify({ ...good, step: 3 })}\n`,
      );
      const read = await Transcript.read(file);
      expect(
        read.map((l) => (l.type === 'request' ? l.step : l.type)),
        JSON.stringify(line),
      ).toEqual([1]);
    }
  });
});
