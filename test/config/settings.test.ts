import { describe, expect, it } from 'vitest';
import { parseSettings } from '../../src/config/parse.js';
import { atMost, int, mergeTrees } from '../../src/config/settings.js';
import { list } from '../../src/config/collections.js';

const sources = { argv: [], env: {}, home: '/home/u', cpus: 2, packageRoot: '/pkg', cwd: '/work' };

describe('settings declared once', () => {
  const tree = {
    jobs: {
      max: int({ help: 'most', default: 8, min: 1, max: 100, flag: '--max N' }),
      usual: int({ help: 'usual', default: 4, min: 1, env: 'USUAL', flag: '--usual N' }),
    },
    dirs: list({
      help: 'folders',
      item: 'folder',
      paths: true,
      combine: 'add',
      default: ['/base'],
      env: { name: 'DIRS', separator: ',' },
      flag: '--dir DIR',
    }),
  };
  const constraints = [atMost('jobs.usual', 'jobs.max')];

  it("applies defaults < file < env < flags, resolving paths against each source's base, lists adding up", () => {
    const values = parseSettings(tree, constraints, {
      ...sources,
      fileText: JSON.stringify({ jobs: { usual: 2 }, dirs: ['rel'] }),
      filePath: '/etc/app/config.json',
      env: { USUAL: '3', DIRS: 'a, /b' },
      argv: ['--dir', 'c', '--dir=/b'],
    });
    expect(values).toEqual({ jobs: { max: 8, usual: 3 }, dirs: ['/base', '/etc/app/rel', '/work/a', '/b', '/work/c'] });
  });

  it('names the setting, the source, the value and the range when a value is out of it', () => {
    expect(() => parseSettings(tree, constraints, { ...sources, argv: ['--max', '500'] })).toThrow(
      'Expected --max (jobs.max) to be an integer from 1 to 100, got "500".',
    );
    expect(() => parseSettings(tree, constraints, { ...sources, env: { USUAL: 'many' } })).toThrow(
      'Expected USUAL (jobs.usual) to be an integer from 1 up, got "many".',
    );
    expect(() => parseSettings(tree, constraints, { ...sources, fileText: '{"jobs": {"max": 0}}' })).toThrow(
      'The config file is invalid: Expected jobs.max to be an integer from 1 to 100, got 0.',
    );
  });

  it('refuses an unknown key, listing the known ones, and a flag nobody declared', () => {
    expect(() => parseSettings(tree, constraints, { ...sources, fileText: '{"jobs": {"maks": 3}}' })).toThrow(
      /unknown key jobs\.maks/,
    );
    try {
      parseSettings(tree, constraints, { ...sources, fileText: '{"jobs": {"maks": 3}}' });
    } catch (error) {
      expect((error as { hint?: string }).hint).toBe('Known keys in jobs: max, usual.');
    }
    expect(() => parseSettings(tree, constraints, { ...sources, argv: ['--maks', '3'] })).toThrow(
      'Unknown option --maks.',
    );
  });

  it('lets a default give way to a ceiling the user set, but not a value the user set', () => {
    expect(parseSettings(tree, constraints, { ...sources, argv: ['--max', '2'] })).toMatchObject({
      jobs: { max: 2, usual: 2 },
    });
    expect(() => parseSettings(tree, constraints, { ...sources, argv: ['--max', '2', '--usual', '3'] })).toThrow(
      'Expected --usual (jobs.usual) to be at most jobs.max (2), got 3.',
    );
  });

  it('refuses a setting declared twice', () => {
    expect(() => mergeTrees(tree, { jobs: { max: int({ help: 'again', default: 1, min: 1 }) } })).toThrow(
      'The setting jobs.max is declared twice.',
    );
  });
});
