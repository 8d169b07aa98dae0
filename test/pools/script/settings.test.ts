import { describe, expect, it } from 'vitest';
import { parseConfig, type ConfigSources } from '../../../src/registry.js';
import { platformFor } from '../../../src/platform/index.js';

const base: ConfigSources = {
  argv: [],
  env: {},
  home: '/home/u',
  cpus: 2,
  packageRoot: '/opt/monitor',
  cwd: '/work/project',
};

describe('the workers folders', () => {
  it('search the bundled folder, then the user workers folder beside the default config file (computed from env)', () => {
    const linux = parseConfig(base);
    expect(linux.bundledWorkersDir).toBe('/opt/monitor/workers');
    expect(linux.userWorkersDir).toBe('/home/u/.config/monitor-mcp/workers');
    expect(linux.workersDirs).toEqual(['/opt/monitor/workers', '/home/u/.config/monitor-mcp/workers']);

    const xdg = parseConfig({ ...base, env: { XDG_CONFIG_HOME: '/xdg/config' } });
    expect(xdg.userWorkersDir).toBe('/xdg/config/monitor-mcp/workers');
    expect(xdg.workersDirs).toEqual(['/opt/monitor/workers', '/xdg/config/monitor-mcp/workers']);

    const mac = parseConfig({ ...base, home: '/Users/u', platform: platformFor('darwin') });
    expect(mac.userWorkersDir).toBe('/Users/u/Library/Application Support/monitor-mcp/workers');
    const macXdg = parseConfig({ ...base, env: { XDG_CONFIG_HOME: '/x' }, platform: platformFor('darwin') });
    expect(macXdg.userWorkersDir).toBe('/x/monitor-mcp/workers');

    const windows = parseConfig({
      ...base,
      home: 'C:\\Users\\u',
      env: { APPDATA: 'C:\\Users\\u\\AppData\\Roaming' },
      platform: platformFor('win32', {}),
    });
    expect(windows.userWorkersDir).toBe('C:\\Users\\u\\AppData\\Roaming\\monitor-mcp\\workers');
  });

  it('add the folders the user names after those two, each once', () => {
    const config = parseConfig({
      ...base,
      env: { XDG_CONFIG_HOME: '/xdg', MONITOR_WORKERS_DIRS: '/env/w' },
      argv: ['--workers-dir', 'mine', '--workers-dir', '/xdg/monitor-mcp/workers'],
    });
    expect(config.workersDirs).toEqual([
      '/opt/monitor/workers',
      '/xdg/monitor-mcp/workers',
      '/env/w',
      '/work/project/mine',
    ]);
  });

  it('are not settable as such in the config file (they are computed)', () => {
    expect(() =>
      parseConfig({ ...base, fileText: JSON.stringify({ userWorkersDir: '/elsewhere' }), filePath: '/etc/m.json' }),
    ).toThrow(/unknown key userWorkersDir/);
  });
});
