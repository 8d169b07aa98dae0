import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { configFilePath, parseConfig, type ConfigSources } from '../src/config.js';

const base: ConfigSources = { argv: [], env: {}, home: '/home/u', cpus: 6, packageRoot: '/opt/monitor', cwd: '/work/project' };

describe('parseConfig', () => {
  it('has sensible defaults derived from the machine', () => {
    const config = parseConfig(base);
    expect(config.stateDir).toBe('/home/u/.local/state/monitor-mcp');
    expect(config.retentionDays).toBe(7);
    expect(config.workersDirs).toEqual(['/opt/monitor/workers']);
    expect(config.allowedRoots).toEqual(['/work/project']);
    expect(config.script.defaultConcurrency).toBe(6);
    expect(config.collect.maxBudgetTokens).toBe(25000);
    expect(config.llm.endpoints[0]).toMatchObject({ url: 'http://127.0.0.1:1234', concurrency: 4, flavor: 'lmstudio' });
    expect(config.http.allowHosts).toEqual([]);
  });

  it('layers defaults < file < env < flags', () => {
    const fileText = JSON.stringify({ stateDir: 'state', retentionDays: 3, script: { defaultTimeoutSeconds: 10 }, collect: { defaultWaitSeconds: 5 } });
    const fromFile = parseConfig({ ...base, fileText, filePath: '/etc/mm/config.json' });
    expect(fromFile.stateDir).toBe('/etc/mm/state');
    expect(fromFile.retentionDays).toBe(3);
    expect(fromFile.script.defaultTimeoutSeconds).toBe(10);

    const fromEnv = parseConfig({ ...base, fileText, filePath: '/etc/mm/config.json', env: { MONITOR_STATE_DIR: '/var/mm', MONITOR_RETENTION_DAYS: '2' } });
    expect(fromEnv.stateDir).toBe('/var/mm');
    expect(fromEnv.retentionDays).toBe(2);
    expect(fromEnv.script.defaultTimeoutSeconds).toBe(10);

    const fromFlags = parseConfig({
      ...base,
      fileText,
      filePath: '/etc/mm/config.json',
      env: { MONITOR_STATE_DIR: '/var/mm', MONITOR_RETENTION_DAYS: '2' },
      argv: ['--state-dir', 'here', '--retention-days=1', '--timeout', '2.5'],
    });
    expect(fromFlags.stateDir).toBe(path.resolve('/work/project', 'here'));
    expect(fromFlags.retentionDays).toBe(1);
    expect(fromFlags.script.defaultTimeoutSeconds).toBe(2.5);
    expect(fromFlags.collect.defaultWaitSeconds).toBe(5);
  });

  it('adds workers dirs after the bundled one and honours XDG_STATE_HOME', () => {
    const config = parseConfig({ ...base, env: { XDG_STATE_HOME: '/xdg' }, argv: ['--workers-dir', 'mine', '--workers-dir', '/abs/w'] });
    expect(config.stateDir).toBe('/xdg/monitor-mcp');
    expect(config.workersDirs).toEqual(['/opt/monitor/workers', '/work/project/mine', '/abs/w']);
  });

  it('parses endpoint specs and strips a pasted /v1', () => {
    const config = parseConfig({ ...base, argv: ['--endpoint', 'gpu2=http://10.0.0.2:1234/v1@2', '--endpoint', 'http://127.0.0.1:8080'] });
    expect(config.llm.endpoints).toEqual([
      expect.objectContaining({ name: 'gpu2', url: 'http://10.0.0.2:1234', concurrency: 2 }),
      expect.objectContaining({ name: 'endpoint2', url: 'http://127.0.0.1:8080', concurrency: 4 }),
    ]);
  });

  it('caps the page budget at Claude Code\'s 25,000 tokens and waits at the maximum wait', () => {
    const config = parseConfig({ ...base, fileText: JSON.stringify({ collect: { maxBudgetTokens: 90000, defaultBudgetTokens: 60000, defaultWaitSeconds: 500 } }) });
    expect(config.collect.maxBudgetTokens).toBe(25000);
    expect(config.collect.defaultBudgetTokens).toBe(25000);
    expect(config.collect.defaultWaitSeconds).toBe(config.collect.maxWaitSeconds);
  });

  it('rejects bad input with messages that name the problem', () => {
    expect(() => parseConfig({ ...base, argv: ['--bogus'] })).toThrow(/Unknown option --bogus/);
    expect(() => parseConfig({ ...base, argv: ['--state-dir'] })).toThrow(/needs a value/);
    expect(() => parseConfig({ ...base, argv: ['--concurrency', '0'] })).toThrow(/--concurrency to be an integer ≥ 1, got "0"/);
    expect(() => parseConfig({ ...base, env: { MONITOR_RETENTION_DAYS: 'soon' } })).toThrow(/MONITOR_RETENTION_DAYS/);
    expect(() => parseConfig({ ...base, fileText: '{ nope' })).toThrow(/not valid JSON/);
    expect(() => parseConfig({ ...base, fileText: JSON.stringify({ retentionDayz: 3 }) })).toThrow(/invalid/);
    expect(() => parseConfig({ ...base, argv: ['--lmstudio-url', 'ftp://x'] })).toThrow(/http\(s\) URL/);
  });
});

describe('configFilePath', () => {
  it('prefers --config, then MONITOR_MCP_CONFIG, then the XDG default', () => {
    expect(configFilePath(['--config', 'a.json'], { MONITOR_MCP_CONFIG: 'b.json' }, '/h')).toEqual({ path: 'a.json', explicit: true });
    expect(configFilePath([], { MONITOR_MCP_CONFIG: 'b.json' }, '/h')).toEqual({ path: 'b.json', explicit: true });
    expect(configFilePath([], { XDG_CONFIG_HOME: '/cfg' }, '/h')).toEqual({ path: '/cfg/monitor-mcp/config.json', explicit: false });
    expect(configFilePath([], {}, '/h')).toEqual({ path: '/h/.config/monitor-mcp/config.json', explicit: false });
  });
});

describe('parseConfig: http', () => {
  it('takes the allowlist, private-address switch and secret env names from file, env and flags', () => {
    const fileText = JSON.stringify({ http: { allowHosts: ['api.github.com'], secretEnv: ['GITHUB_TOKEN'], perHostConcurrency: 2, maxRetryAfterSeconds: 10 } });
    const fromFile = parseConfig({ ...base, fileText, filePath: '/etc/mm/config.json' });
    expect(fromFile.http).toMatchObject({ allowHosts: ['api.github.com'], secretEnv: ['GITHUB_TOKEN'], perHostConcurrency: 2, maxRetryAfterSeconds: 10, allowPrivateAddresses: false });

    const fromEnv = parseConfig({ ...base, env: { MONITOR_HTTP_ALLOW_HOSTS: 'a.example.com, *.b.example.com', MONITOR_HTTP_ALLOW_PRIVATE: '1', MONITOR_HTTP_SECRET_ENV: 'A_TOKEN,B_TOKEN' } });
    expect(fromEnv.http).toMatchObject({ allowHosts: ['a.example.com', '*.b.example.com'], allowPrivateAddresses: true, secretEnv: ['A_TOKEN', 'B_TOKEN'] });

    const fromFlags = parseConfig({ ...base, fileText, filePath: '/etc/mm/config.json', argv: ['--http-allow-host', '127.0.0.1:8080', '--http-allow-private', '--http-secret-env=NPM_TOKEN'] });
    expect(fromFlags.http).toMatchObject({ allowHosts: ['api.github.com', '127.0.0.1:8080'], allowPrivateAddresses: true, secretEnv: ['GITHUB_TOKEN', 'NPM_TOKEN'] });
  });

  it('rejects allowlist entries that are not [*.]host[:port]', () => {
    expect(() => parseConfig({ ...base, argv: ['--http-allow-host', 'https://api.github.com/'] })).toThrow(/allowHosts entry/);
    expect(() => parseConfig({ ...base, env: { MONITOR_HTTP_SECRET_ENV: 'not-a-name' } })).toThrow(/env var names/);
  });
});
