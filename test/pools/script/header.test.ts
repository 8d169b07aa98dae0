import { describe, expect, it } from 'vitest';
import { parseWorkerHeader } from '../../../src/pools/script/header.js';

describe('parseWorkerHeader', () => {
  it('reads description, input forms and output from # comments', () => {
    const header = parseWorkerHeader(
      [
        '#!/usr/bin/env python3',
        '# monitor: description: Counts lines.',
        '# monitor: args: FILE... files to count',
        '# monitor: json: {"files": [...]}',
        '# monitor: output: json',
        '# monitor: env: COUNT_MODE, COUNT_LIMIT not-a=name',
        '# monitor: isolated: yes',
        '# monitor: warm: yes',
        'import sys',
      ].join('\n'),
    );
    expect(header).toEqual({
      description: 'Counts lines.',
      input: { args: 'FILE... files to count', json: '{"files": [...]}' },
      output: 'json',
      env: ['COUNT_MODE', 'COUNT_LIMIT'],
      isolated: true,
      warm: true,
      extra: {},
    });
  });

  it('accepts //, -- and ; comments, any key case, and continues a repeated key', () => {
    const header = parseWorkerHeader(
      [
        '// monitor: Description: First part,',
        '//   monitor: description: second part.',
        '-- monitor: stdin: text to scan',
        '; monitor: example: {"args": ["a"]}',
      ].join('\n'),
    );
    expect(header.description).toBe('First part, second part.');
    expect(header.input).toEqual({ stdin: 'text to scan' });
    expect(header.extra).toEqual({ example: '{"args": ["a"]}' });
  });

  it('gives an empty header for a script without one, and ignores lines far down the file', () => {
    expect(parseWorkerHeader('echo hi\n')).toEqual({ input: {}, env: [], isolated: false, warm: false, extra: {} });
    const late = `${'x = 1\n'.repeat(100)}# monitor: description: too late\n`;
    expect(parseWorkerHeader(late).description).toBeUndefined();
  });

  it('reads pack: files, and keeps any other pack value as a plain key (no promise to split on)', () => {
    expect(parseWorkerHeader('# monitor: pack: files\n').pack).toBe('files');
    expect(parseWorkerHeader('# monitor: pack: Files\n').pack).toBe('files');
    const other = parseWorkerHeader('# monitor: pack: lines\n');
    expect(other.pack).toBeUndefined();
    expect(other.extra).toEqual({ pack: 'lines' });
  });

  it('ignores lines that only look similar', () => {
    const header = parseWorkerHeader(
      [
        'print("# monitor: description: not a comment")',
        '# monitor description missing colon',
        '# monitor: args:',
      ].join('\n'),
    );
    expect(header).toEqual({ input: {}, env: [], isolated: false, warm: false, extra: {} });
  });
});
