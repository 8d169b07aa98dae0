import { describe, expect, it } from 'vitest';
import { call, commandWords, json, listArgument, untemplated } from '../../src/prompts/text.js';

describe('prompt text pieces', () => {
  it('writes JSON no backtick can end early, which still parses to the same value', () => {
    const value = { a: 'x`y\\`z', b: ['```'], c: 'line\nbreak "quoted"' };
    const shown = json(value);
    expect(shown).not.toContain('`');
    expect(JSON.parse(shown)).toEqual(value);
    expect(call('collect_results', { job_ids: ['j`'] })).toBe('collect_results with `{"job_ids":["j\\u0060"]}`');
  });

  it('splits a command line as a shell would, and gives up where only a shell could run it', () => {
    expect(commandWords('npx vitest run')).toEqual(['npx', 'vitest', 'run']);
    expect(commandWords(`  pytest -k 'a and b' "x y" c\\ d ''  `)).toEqual([
      'pytest',
      '-k',
      'a and b',
      'x y',
      'c d',
      '',
    ]);
    expect(commandWords(`echo "say \\"hi\\" \\\\ now"`)).toEqual(['echo', 'say "hi" \\ now']);
    expect(commandWords("echo '$HOME `x` *'")).toEqual(['echo', '$HOME `x` *']);
    for (const shell of [
      'npm test | tee log',
      'make && make test',
      'a; b',
      'run > out',
      'echo $HOME',
      'echo "$HOME"',
      'echo `date`',
      'pytest tests/*.py',
      '(cd x)',
      '~/bin/run',
      "echo 'open",
      '',
      '   ',
    ])
      expect(commandWords(shell), shell).toBeUndefined();
  });

  it('splits a list at commas and line breaks, but not inside {a,b}', () => {
    expect(listArgument('src/**/*.{ts,js}, test/*.ts\nREADME.md,,')).toEqual([
      'src/**/*.{ts,js}',
      'test/*.ts',
      'README.md',
    ]);
    expect(listArgument(' , ')).toEqual([]);
  });

  it('breaks up placeholders in user text so a template cannot be steered by it', () => {
    expect(untemplated('use {{content}} or {{ path }}')).toBe('use { {content} } or { { path } }');
  });
});
