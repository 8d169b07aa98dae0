import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { configFilePath, parseConfig, type ConfigSources } from '../src/registry.js';
import { errorText } from '../src/errors.js';
import { resolveInsideRoots } from '../src/paths.js';
import { platformFor } from '../src/platform/index.js';

const base: ConfigSources = {
  argv: [],
  env: {},
  home: '/home/u',
  cpus: 6,
  packageRoot: '/opt/monitor',
  cwd: '/work/project',
};

describe('parseConfig', () => {
  it('takes its default folders and path rules from the platform it is given', () => {
    const windows = parseConfig({
      ...base,
      env: { LOCALAPPDATA: 'C:\\Users\\u\\AppData\\Local' },
      platform: platformFor('win32', {}),
    });
    expect(windows.stateDir).toBe('C:\\Users\\u\\AppData\\Local\\monitor-mcp\\state');
    expect(windows.pathRules).toEqual({ flavor: 'win32', caseInsensitive: true });
    const mac = parseConfig({ ...base, home: '/Users/u', platform: platformFor('darwin') });
    expect(mac.stateDir).toBe('/Users/u/Library/Application Support/monitor-mcp/state');
    expect(mac.pathRules).toEqual({ flavor: 'posix', caseInsensitive: true });
    expect(parseConfig(base).pathRules).toEqual({ flavor: 'posix', caseInsensitive: false });
    expect(
      configFilePath([], { APPDATA: 'C:\\Users\\u\\AppData\\Roaming' }, 'C:\\Users\\u', platformFor('win32', {})).path,
    ).toBe('C:\\Users\\u\\AppData\\Roaming\\monitor-mcp\\config.json');
    expect(configFilePath([], {}, '/Users/u', platformFor('darwin')).path).toBe(
      '/Users/u/Library/Application Support/monitor-mcp/config.json',
    );
  });

  it('has sensible defaults derived from the machine', () => {
    const config = parseConfig(base);
    expect(config.stateDir).toBe('/home/u/.local/state/monitor-mcp');
    expect(config.retentionDays).toBe(7);
    expect(config.workersDirs).toEqual(['/opt/monitor/workers', '/home/u/.config/monitor-mcp/workers']);
    expect(config.allowedRoots).toEqual(['/work/project']);
    expect(config.script.defaultConcurrency).toBe(6);
    expect(config.collect.maxBudgetTokens).toBe(12000);
    expect(config.llm.endpoints[0]).toMatchObject({ url: 'http://127.0.0.1:1234', concurrency: 4, flavor: 'lmstudio' });
    expect(config.http.allowHosts).toEqual([]);
  });

  it('layers defaults < file < env < flags', () => {
    const fileText = JSON.stringify({
      stateDir: 'state',
      retentionDays: 3,
      script: { defaultTimeoutSeconds: 10 },
      collect: { defaultWaitSeconds: 5 },
    });
    const fromFile = parseConfig({ ...base, fileText, filePath: '/etc/mm/config.json' });
    expect(fromFile.stateDir).toBe('/etc/mm/state');
    expect(fromFile.retentionDays).toBe(3);
    expect(fromFile.script.defaultTimeoutSeconds).toBe(10);

    const fromEnv = parseConfig({
      ...base,
      fileText,
      filePath: '/etc/mm/config.json',
      env: { MONITOR_STATE_DIR: '/var/mm', MONITOR_RETENTION_DAYS: '2' },
    });
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

  it('adds workers dirs after the bundled one and the user one, and honours XDG_STATE_HOME', () => {
    const config = parseConfig({
      ...base,
      env: { XDG_STATE_HOME: '/xdg' },
      argv: ['--workers-dir', 'mine', '--workers-dir', '/abs/w'],
    });
    expect(config.stateDir).toBe('/xdg/monitor-mcp');
    expect(config.workersDirs).toEqual([
      '/opt/monitor/workers',
      '/home/u/.config/monitor-mcp/workers',
      '/work/project/mine',
      '/abs/w',
    ]);
  });

  it('parses endpoint specs and strips a pasted /v1', () => {
    const config = parseConfig({
      ...base,
      argv: ['--endpoint', 'gpu2=http://10.0.0.2:1234/v1@2', '--endpoint', 'http://127.0.0.1:8080'],
    });
    expect(config.llm.endpoints).toEqual([
      expect.objectContaining({ name: 'gpu2', url: 'http://10.0.0.2:1234', concurrency: 2 }),
      expect.objectContaining({ name: 'endpoint2', url: 'http://127.0.0.1:8080', concurrency: 4 }),
    ]);
  });

  it("refuses a page budget whose two copies would pass Claude Code's 25,000 tokens, and a default above its maximum, naming setting, value and range", () => {
    const file = (collect: Record<string, number>): string => JSON.stringify({ collect });
    expect(() => parseConfig({ ...base, fileText: file({ maxBudgetTokens: 20000 }) })).toThrow(
      /Expected collect\.maxBudgetTokens to be an integer from 1 to 12000, got 20000/,
    );
    expect(() => parseConfig({ ...base, fileText: file({ defaultWaitSeconds: 500 }) })).toThrow(
      /Expected collect\.defaultWaitSeconds to be a number from 0 to 110, got 500/,
    );
    expect(() =>
      parseConfig({ ...base, fileText: file({ maxBudgetTokens: 4000, defaultBudgetTokens: 6000 }) }),
    ).toThrow(/Expected collect\.defaultBudgetTokens to be at most collect\.maxBudgetTokens \(4000\), got 6000/);
    expect(() => parseConfig({ ...base, argv: ['--wait-seconds', '60', '--max-wait-seconds', '30'] })).toThrow(
      /Expected --wait-seconds \(collect\.defaultWaitSeconds\) to be at most collect\.maxWaitSeconds \(30\), got 60/,
    );
    // A default the user did not set gives way to a maximum they did.
    const lowered = parseConfig({
      ...base,
      argv: ['--max-wait-seconds', '5'],
      fileText: file({ maxBudgetTokens: 1000 }),
    });
    expect(lowered.collect).toMatchObject({
      maxWaitSeconds: 5,
      defaultWaitSeconds: 5,
      maxBudgetTokens: 1000,
      defaultBudgetTokens: 1000,
    });
  });

  it('allows no folder by default when started in the filesystem root (as Claude Desktop may), and says to pass --root', async () => {
    const atRoot = parseConfig({ ...base, cwd: '/' });
    expect(atRoot.allowedRoots).toEqual([]);
    await expect(resolveInsideRoots('src', atRoot.allowedRoots, { what: 'cwd' })).rejects.toMatchObject({
      code: 'PATH_OUTSIDE_ROOT',
      hint: expect.stringContaining('start the server with --root /path/to/project'),
    });
    // An explicit root, from any source, is taken as given.
    expect(parseConfig({ ...base, cwd: '/', argv: ['--root', '/srv/app'] }).allowedRoots).toEqual(['/srv/app']);
    // Several folders after one --root, as a Claude Desktop bundle expands the folders picked, up to the next option.
    expect(
      parseConfig({ ...base, cwd: '/', argv: ['--root', '/a', '/b', '--log-level', 'warn', '--root', '/c', 'd'] })
        .allowedRoots,
    ).toEqual(['/a', '/b', '/c', '/d']);
    expect(parseConfig({ ...base, cwd: '/', env: { MONITOR_ALLOWED_ROOTS: '/a:/b' } }).allowedRoots).toEqual([
      '/a',
      '/b',
    ]);
    expect(
      parseConfig({
        ...base,
        cwd: '/',
        fileText: JSON.stringify({ allowedRoots: ['/c'] }),
        filePath: '/etc/mm/config.json',
      }).allowedRoots,
    ).toEqual(['/c']);
  });

  it('caps timeouts and waits where Node timers would overflow or the client would give up', () => {
    const maxed = parseConfig({
      ...base,
      fileText: JSON.stringify({
        script: { defaultTimeoutSeconds: 86_400 },
        http: { timeoutSeconds: 86_400 },
        llm: { requestTimeoutSeconds: 86_400 },
        collect: { maxWaitSeconds: 110 },
      }),
    });
    expect([
      maxed.script.defaultTimeoutSeconds,
      maxed.http.timeoutSeconds,
      maxed.llm.requestTimeoutSeconds,
      maxed.collect.maxWaitSeconds,
    ]).toEqual([86_400, 86_400, 86_400, 110]);
    for (const [section, key, value] of [
      ['script', 'defaultTimeoutSeconds', 86_401],
      ['http', 'timeoutSeconds', 3e9],
      ['llm', 'requestTimeoutSeconds', 1e12],
      ['collect', 'maxWaitSeconds', 111],
    ] as const) {
      expect(
        () => parseConfig({ ...base, fileText: JSON.stringify({ [section]: { [key]: value } }) }),
        `${section}.${key}`,
      ).toThrow(new RegExp(`Expected ${section}\\.${key} to be a number from [\\d.]+ to \\d+, got ${value}`));
    }
    expect(() => parseConfig({ ...base, argv: ['--timeout', '2147484'] })).toThrow(
      /--timeout \(script\.defaultTimeoutSeconds\) to be a number from 0.001 to 86400, got "2147484"/,
    );
    expect(() => parseConfig({ ...base, argv: ['--max-wait-seconds', '600'] })).toThrow(
      /--max-wait-seconds \(collect\.maxWaitSeconds\) to be a number from 0 to 110/,
    );
    expect(() => parseConfig({ ...base, argv: ['--wait-seconds', '1e10'] })).toThrow(
      /--wait-seconds \(collect\.defaultWaitSeconds\) to be a number from 0 to 110/,
    );
    expect(
      parseConfig({ ...base, argv: ['--timeout', '86400', '--max-wait-seconds', '110'] }).collect.maxWaitSeconds,
    ).toBe(110);
  });

  it('rejects bad input with messages that name the problem', () => {
    expect(() => parseConfig({ ...base, argv: ['--bogus'] })).toThrow(/Unknown option --bogus/);
    expect(() => parseConfig({ ...base, argv: ['--state-dir'] })).toThrow(/needs a value/);
    expect(() => parseConfig({ ...base, argv: ['--concurrency', '0'] })).toThrow(
      /--concurrency \(script\.defaultConcurrency\) to be an integer from 1 up, got "0"/,
    );
    expect(() => parseConfig({ ...base, env: { MONITOR_RETENTION_DAYS: 'soon' } })).toThrow(/MONITOR_RETENTION_DAYS/);
    expect(() => parseConfig({ ...base, fileText: '{ nope' })).toThrow(/not valid JSON/);
    expect(() => parseConfig({ ...base, fileText: JSON.stringify({ retentionDayz: 3 }) })).toThrow(/invalid/);
    expect(() => parseConfig({ ...base, argv: ['--lmstudio-url', 'ftp://x'] })).toThrow(/http\(s\) URL/);
  });
});

describe('configFilePath', () => {
  it('prefers --config, then MONITOR_MCP_CONFIG, then the XDG default', () => {
    expect(configFilePath(['--config', 'a.json'], { MONITOR_MCP_CONFIG: 'b.json' }, '/h')).toEqual({
      path: 'a.json',
      explicit: true,
    });
    expect(configFilePath([], { MONITOR_MCP_CONFIG: 'b.json' }, '/h')).toEqual({ path: 'b.json', explicit: true });
    expect(configFilePath([], { XDG_CONFIG_HOME: '/cfg' }, '/h')).toEqual({
      path: '/cfg/monitor-mcp/config.json',
      explicit: false,
    });
    expect(configFilePath([], {}, '/h')).toEqual({ path: '/h/.config/monitor-mcp/config.json', explicit: false });
  });
});

describe('parseConfig: http', () => {
  it('takes the allowlist, private-address switch and secret env names from file, env and flags', () => {
    const fileText = JSON.stringify({
      http: {
        allowHosts: ['api.github.com'],
        secretEnv: ['GITHUB_TOKEN'],
        perHostConcurrency: 2,
        maxRetryAfterSeconds: 10,
      },
    });
    const fromFile = parseConfig({ ...base, fileText, filePath: '/etc/mm/config.json' });
    expect(fromFile.http).toMatchObject({
      allowHosts: ['api.github.com'],
      secretEnv: ['GITHUB_TOKEN'],
      perHostConcurrency: 2,
      maxRetryAfterSeconds: 10,
      allowPrivateAddresses: false,
    });

    const fromEnv = parseConfig({
      ...base,
      env: {
        MONITOR_HTTP_ALLOW_HOSTS: 'a.example.com, *.b.example.com',
        MONITOR_HTTP_ALLOW_PRIVATE: '1',
        MONITOR_HTTP_SECRET_ENV: 'A_TOKEN,B_TOKEN',
      },
    });
    expect(fromEnv.http).toMatchObject({
      allowHosts: ['a.example.com', '*.b.example.com'],
      allowPrivateAddresses: true,
      secretEnv: ['A_TOKEN', 'B_TOKEN'],
    });

    const fromFlags = parseConfig({
      ...base,
      fileText,
      filePath: '/etc/mm/config.json',
      argv: ['--http-allow-host', '127.0.0.1:8080', '--http-allow-private', '--http-secret-env=NPM_TOKEN'],
    });
    expect(fromFlags.http).toMatchObject({
      allowHosts: ['api.github.com', '127.0.0.1:8080'],
      allowPrivateAddresses: true,
      secretEnv: ['GITHUB_TOKEN', 'NPM_TOKEN'],
    });
  });

  it('adds up list settings from file, env and flags (none replaces another)', () => {
    const fileText = JSON.stringify({
      workersDirs: ['file-workers'],
      allowCommands: ['rg'],
      http: { allowHosts: ['file.example.com'], secretEnv: ['FILE_TOKEN'] },
    });
    const config = parseConfig({
      ...base,
      fileText,
      filePath: '/etc/mm/config.json',
      env: {
        MONITOR_WORKERS_DIRS: '/env/w1:/env/w2',
        MONITOR_ALLOW_COMMANDS: 'jq',
        MONITOR_HTTP_ALLOW_HOSTS: 'env.example.com,file.example.com',
        MONITOR_HTTP_SECRET_ENV: 'ENV_TOKEN',
      },
      argv: [
        '--workers-dir',
        '/flag/w',
        '--allow-command',
        'git',
        '--http-allow-host',
        'flag.example.com',
        '--http-secret-env',
        'FLAG_TOKEN',
      ],
    });
    expect(config.workersDirs).toEqual([
      '/opt/monitor/workers',
      '/home/u/.config/monitor-mcp/workers',
      '/etc/mm/file-workers',
      '/env/w1',
      '/env/w2',
      '/flag/w',
    ]);
    expect(config.allowCommands).toEqual(['rg', 'jq', 'git']);
    // Repeats collapse.
    expect(config.http.allowHosts).toEqual(['file.example.com', 'env.example.com', 'flag.example.com']);
    expect(config.http.secretEnv).toEqual(['FILE_TOKEN', 'ENV_TOKEN', 'FLAG_TOKEN']);
  });

  it('rejects allowlist entries that are not [*.]host[:port]', () => {
    expect(() => parseConfig({ ...base, argv: ['--http-allow-host', 'https://api.github.com/'] })).toThrow(
      /--http-allow-host \(http\.allowHosts\) to be a list of host entries like "api\.github\.com"/,
    );
    expect(() => parseConfig({ ...base, env: { MONITOR_HTTP_SECRET_ENV: 'not-a-name' } })).toThrow(/env var names/);
  });
});

describe('parseConfig: LLM endpoints', () => {
  it('reads [NAME=]URL[@N][#FLAVOR]: port 1234 is LM Studio, #openai/#lmstudio override, LM Studio reads LM_API_TOKEN', () => {
    const config = parseConfig({
      ...base,
      argv: [
        '--endpoint',
        'lmstudio=http://127.0.0.1:1234',
        '--endpoint',
        'ollama=http://127.0.0.1:11434/v1',
        '--endpoint',
        'box=http://10.0.0.3:8080@2#lmstudio',
        '--endpoint',
        'proxy=http://10.0.0.4:1234#openai',
      ],
    });
    expect(config.llm.endpoints).toEqual([
      {
        name: 'lmstudio',
        url: 'http://127.0.0.1:1234',
        concurrency: 4,
        concurrencyAuto: true,
        models: [],
        flavor: 'lmstudio',
        apiKeyEnv: 'LM_API_TOKEN',
      },
      {
        name: 'ollama',
        url: 'http://127.0.0.1:11434',
        concurrency: 4,
        concurrencyAuto: true,
        models: [],
        flavor: 'openai',
      },
      {
        name: 'box',
        url: 'http://10.0.0.3:8080',
        concurrency: 2,
        models: [],
        flavor: 'lmstudio',
        apiKeyEnv: 'LM_API_TOKEN',
      },
      {
        name: 'proxy',
        url: 'http://10.0.0.4:1234',
        concurrency: 4,
        concurrencyAuto: true,
        models: [],
        flavor: 'openai',
      },
    ]);
    expect(() => parseConfig({ ...base, argv: ['--endpoint', 'http://127.0.0.1:1234#vllm'] })).toThrow(
      /#lmstudio or #openai/,
    );
  });

  it('takes several endpoints in one MONITOR_ENDPOINTS text (a Claude Desktop settings field); empty keeps the default', () => {
    const specs = 'lmstudio=http://127.0.0.1:1234,  box=http://10.0.0.3:8080@2#lmstudio\nhttp://10.0.0.4:8000/v1';
    const fromEnv = parseConfig({ ...base, env: { MONITOR_ENDPOINTS: specs } }).llm.endpoints;
    expect(fromEnv.map((e) => [e.name, e.url, e.concurrency, e.flavor, e.apiKeyEnv])).toEqual([
      ['lmstudio', 'http://127.0.0.1:1234', 4, 'lmstudio', 'LM_API_TOKEN'],
      ['box', 'http://10.0.0.3:8080', 2, 'lmstudio', 'LM_API_TOKEN'],
      ['endpoint3', 'http://10.0.0.4:8000', 4, 'openai', undefined],
    ]);
    const defaults = parseConfig(base).llm.endpoints;
    expect(parseConfig({ ...base, env: { MONITOR_ENDPOINTS: ' , ' } }).llm.endpoints).toEqual(defaults);
    // Flags still win over the environment.
    expect(
      parseConfig({
        ...base,
        env: { MONITOR_ENDPOINTS: specs },
        argv: ['--endpoint', 'x=http://10.0.0.9:1'],
      }).llm.endpoints.map((e) => e.name),
    ).toEqual(['x']);
    expect(() => parseConfig({ ...base, env: { MONITOR_ENDPOINTS: 'a=ftp://x' } })).toThrow(/MONITOR_ENDPOINTS/);
  });

  it('gives LM Studio endpoints from the config file and --lmstudio-url the LM_API_TOKEN default, keeping an explicit apiKeyEnv', () => {
    const fileText = JSON.stringify({
      llm: {
        endpoints: [
          { name: 'a', url: 'http://10.0.0.2:1234' },
          { name: 'b', url: 'http://10.0.0.3:9000', flavor: 'lmstudio', apiKeyEnv: 'GPU_TOKEN' },
          { name: 'c', url: 'https://api.example.com', apiKeyEnv: 'OPENAI_API_KEY' },
        ],
      },
    });
    const config = parseConfig({ ...base, fileText, argv: ['--lmstudio-url', 'http://10.0.0.9:1234/v1'] });
    expect(config.llm.endpoints.map((e) => [e.name, e.url, e.flavor, e.apiKeyEnv])).toEqual([
      ['a', 'http://10.0.0.9:1234', 'lmstudio', 'LM_API_TOKEN'],
      ['b', 'http://10.0.0.3:9000', 'lmstudio', 'GPU_TOKEN'],
      ['c', 'https://api.example.com', 'openai', 'OPENAI_API_KEY'],
    ]);
  });

  it('refuses credentials in an endpoint URL without echoing the password, pointing at apiKeyEnv', () => {
    for (const source of [
      { argv: ['--endpoint', 'x=http://user:s3cret@10.0.0.2:1234'] },
      { argv: ['--lmstudio-url', 'http://user:s3cret@10.0.0.2:1234'] },
      { fileText: JSON.stringify({ llm: { endpoints: [{ url: 'http://user:s3cret@10.0.0.2:1234' }] } }) },
    ]) {
      let message = '';
      try {
        parseConfig({ ...base, ...source });
      } catch (error) {
        message = errorText(error);
      }
      expect(message).toMatch(/has a user name or password in it[\s\S]*apiKeyEnv/);
      expect(message).not.toContain('s3cret');
    }
  });
});
