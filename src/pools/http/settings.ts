import { MAX_TIMEOUT_SECONDS } from '../../config/core.js';
import {
  atMost,
  bool,
  type Constraint,
  int,
  invalid,
  num,
  type SettingsTree,
  type ValuesOf,
} from '../../config/settings.js';
import { list } from '../../config/collections.js';
import { isMonitorError } from '../../errors.js';
import { parseHostPattern } from './hosts.js';

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

export const HTTP_SETTINGS = {
  http: {
    allowHosts: list({
      help: 'Hosts http_batch may call',
      details:
        '`api.github.com`, `*.example.com` (subdomains), `127.0.0.1:8080`; without a port only the default one; file, env and flags add up',
      item: 'host',
      combine: 'add',
      default: [],
      env: { name: 'MONITOR_HTTP_ALLOW_HOSTS', separator: ',' },
      flag: '--http-allow-host HOST',
      // A typo in an allowlist entry must fail at start, not silently allow nothing (or too much).
      check: (entry, source) => {
        try {
          parseHostPattern(entry);
        } catch (error) {
          if (!isMonitorError(error)) throw error;
          throw invalid(
            source,
            'a list of host entries like "api.github.com", "*.example.com" or "127.0.0.1:8080"',
            entry,
            error.hint,
          );
        }
      },
    }),
    allowPrivateAddresses: bool({
      help: 'Let allowed hosts resolve to loopback and private addresses',
      default: false,
      env: 'MONITOR_HTTP_ALLOW_PRIVATE',
      flag: '--http-allow-private',
    }),
    secretEnv: list({
      help: 'Env vars header templates may use as ${env:NAME}',
      details: 'Kept from worker scripts; file, env and flags add up',
      item: 'env var name',
      combine: 'add',
      default: [],
      env: { name: 'MONITOR_HTTP_SECRET_ENV', separator: ',' },
      flag: '--http-secret-env NAME',
      check: (entry, source) => {
        if (!ENV_NAME.test(entry)) throw invalid(source, 'a list of env var names', entry);
      },
    }),
    perHostConcurrency: int({
      help: 'Requests in flight at once to one host:port, over all jobs',
      default: 4,
      min: 1,
      max: 256,
    }),
    maxConcurrency: int({ help: 'Requests in flight at once over all hosts and jobs', default: 64, min: 1, max: 1024 }),
    timeoutSeconds: num({
      help: 'Per attempt, from sending to the last body byte, in seconds',
      default: 30,
      min: 0.001,
      max: MAX_TIMEOUT_SECONDS,
    }),
    maxInlineBytes: int({
      help: 'Response bytes shown inline per request; the full body goes to the result file',
      default: 16 * 1024,
      min: 1,
      max: 1024 * 1024,
    }),
    maxJsonBytes: int({
      help: 'JSON bodies up to this size are parsed (and extracted from); larger ones stay in the file',
      default: 8 * 1024 * 1024,
      min: 1,
      max: 256 * 1024 * 1024,
    }),
    maxResponseBytes: int({
      help: 'Hard cap on bytes read from one response; the rest is never read',
      default: 100 * 1024 * 1024,
      min: 1,
    }),
    maxRetries: int({ help: 'Retries on 429/503 and dropped connections', default: 3, min: 0, max: 10 }),
    maxRetryAfterSeconds: num({
      help: 'A Retry-After longer than this fails the request instead of waiting',
      default: 60,
      min: 0,
      max: 3600,
    }),
  },
} satisfies SettingsTree;

export const HTTP_CONSTRAINTS: readonly Constraint[] = [atMost('http.maxInlineBytes', 'http.maxJsonBytes')];

export type HttpConfig = ValuesOf<typeof HTTP_SETTINGS>;
export type HttpSettings = HttpConfig['http'];
