import { appendFile, readFile, stat } from 'node:fs/promises';
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
});
