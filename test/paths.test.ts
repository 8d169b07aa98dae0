import { describe, expect, it } from 'vitest';
import { isInside, LINUX_PATHS, type PathRules, resolveInsideRoots } from '../src/paths.js';

const WINDOWS: PathRules = { flavor: 'win32', caseInsensitive: true };
const MACOS: PathRules = { flavor: 'posix', caseInsensitive: true };

/** [root, candidate, inside?] per file system: the confinement check, run here under each flavour. */
const cases: Array<{ rules: PathRules; name: string; table: Array<[string, string, boolean]> }> = [
  {
    rules: LINUX_PATHS,
    name: 'Linux (posix, case matters)',
    table: [
      ['/home/me/proj', '/home/me/proj', true],
      ['/home/me/proj', '/home/me/proj/src/a.ts', true],
      ['/home/me/proj', '/home/me/proj/..foo', true],
      ['/home/me/proj', '/home/me/proj/../secrets', false],
      ['/home/me/proj', '/home/me/proj2/a', false],
      ['/home/me/proj', '/home/me/Proj/a', false],
      ['/home/me/proj', '/home/me/proj/a/../../proj/b', true],
      ['/home/me/proj', 'proj/a', false],
    ],
  },
  {
    rules: MACOS,
    name: 'macOS (posix, APFS ignores case)',
    table: [
      ['/Users/me/Proj', '/users/ME/proj/src', true],
      ['/Users/me/Proj', '/Users/me/Proj/../Other', false],
      ['/private/var/folders/x', '/private/var/folders/x/y', true],
      ['/Users/me/Proj', '/Users/me/Projects', false],
    ],
  },
  {
    rules: WINDOWS,
    name: 'Windows (win32, NTFS ignores case)',
    table: [
      ['C:\\Proj', 'c:\\proj\\src\\a.ts', true],
      ['C:\\Proj', 'c:\\proj\\..\\PROJ\\x', true],
      ['C:\\Proj', 'C:\\Proj\\..\\Windows\\system32', false],
      ['C:\\Proj', 'C:\\Proj2\\x', false],
      ['C:\\Proj', 'D:\\Proj\\x', false],
      ['C:\\Proj', 'C:/Proj/sub/file.ts', true],
      ['C:\\Proj', 'C:\\Proj\\..foo', true],
      ['C:\\Proj', '\\\\?\\C:\\Proj\\x', true],
      ['C:\\Proj', '\\\\?\\D:\\Proj\\x', false],
      ['C:\\Proj', '\\\\.\\C:\\Proj\\x', true],
      ['\\\\server\\share\\proj', '\\\\SERVER\\Share\\proj\\a', true],
      ['\\\\server\\share\\proj', '\\\\server\\other\\proj\\a', false],
      ['\\\\server\\share\\proj', '\\\\?\\UNC\\server\\share\\proj\\a', true],
      ['\\\\server\\share\\proj', 'C:\\server\\share\\proj', false],
      ['C:\\Proj', 'Proj\\a', false],
      ['C:\\Proj', 'C:relative\\x', false],
    ],
  },
];

describe("path confinement under each platform's rules", () => {
  for (const { rules, name, table } of cases) {
    it.each(table)(`${name}: is %s containing %s? %s`, (root, candidate, inside) => {
      expect(isInside(root, candidate, rules)).toBe(inside);
    });
  }

  it('follows a junction or symlink before the check, under win32 rules with a stand-in file system', async () => {
    // C:\Proj\link is a junction to C:\Secrets; C:\Proj\ok a real file; C:\Proj\gone does not exist.
    const links: Record<string, string> = {
      'c:\\proj': 'C:\\Proj',
      'c:\\proj\\link': 'C:\\Secrets',
      'c:\\proj\\link\\key.pem': 'C:\\Secrets\\key.pem',
      'c:\\proj\\ok.ts': 'C:\\Proj\\ok.ts',
    };
    const realpath = (p: string): Promise<string> => {
      const real = links[p.toLowerCase()];
      return real === undefined
        ? Promise.reject(Object.assign(new Error(`ENOENT: ${p}`), { code: 'ENOENT' }))
        : Promise.resolve(real);
    };
    const options = { rules: WINDOWS, realpath };
    await expect(resolveInsideRoots('ok.ts', ['C:\\Proj'], options)).resolves.toBe('C:\\Proj\\ok.ts');
    await expect(resolveInsideRoots('OK.TS', ['c:\\PROJ'], options)).resolves.toBe('C:\\Proj\\ok.ts');
    await expect(resolveInsideRoots('link\\key.pem', ['C:\\Proj'], options)).rejects.toMatchObject({
      code: 'PATH_OUTSIDE_ROOT',
    });
    await expect(resolveInsideRoots('..\\Secrets\\key.pem', ['C:\\Proj'], options)).rejects.toMatchObject({
      code: 'PATH_OUTSIDE_ROOT',
    });
    await expect(resolveInsideRoots('D:\\Proj\\ok.ts', ['C:\\Proj'], options)).rejects.toMatchObject({
      code: 'PATH_OUTSIDE_ROOT',
    });
    await expect(resolveInsideRoots('gone.ts', ['C:\\Proj'], options)).rejects.toMatchObject({ code: 'INVALID_INPUT' });
  });
});
