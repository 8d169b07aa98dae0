// `npm run bench`: the performance table of the README. Not part of CI (timings need a quiet machine).
import { benchAgents } from './agents.js';
import { benchChecks } from './checks.js';
import { printTable } from './common.js';
import { benchContext } from './context.js';
import { benchDashboard } from './dashboard.js';
import { benchLlm } from './llm.js';
import { benchMemory } from './memory.js';
import { benchPrefix } from './prefix.js';
import { benchResponsiveness } from './responsiveness.js';
import { benchScripts } from './scripts.js';
import { benchStart } from './start.js';
import { benchStops } from './stops.js';
import { benchWarm } from './warm.js';

const only = process.argv.slice(2);
const want = (name: string): boolean => only.length === 0 || only.includes(name);

if (want('start')) printTable('A fast start (issue 23)', await benchStart());
if (want('scripts')) printTable('Script pool', await benchScripts());
if (want('stops')) printTable('How fast work stops (cancel, timeouts)', await benchStops());
if (want('warm')) printTable('Warm workers (issue 10)', await benchWarm());
if (want('llm')) printTable('Local LLM workers', await benchLlm());
if (want('memory')) printTable('Memory under large outputs', await benchMemory());
if (want('context')) printTable('Context economy (issue 11)', await benchContext());
if (want('dashboard')) printTable('Live dashboard (issue 12)', await benchDashboard());
if (want('agents')) printTable('Local agents (issue 20)', await benchAgents());
if (want('checks')) printTable('Answers Claude can trust (issue 21)', await benchChecks());
if (want('prefix')) printTable('Prefix reuse (issue 22)', await benchPrefix());
if (want('responsiveness')) printTable('Responsiveness under load', await benchResponsiveness());
