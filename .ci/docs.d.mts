// Types of docs.mjs for test/docs.test.ts, which runs it over the sources.
import type { Tool } from '@modelcontextprotocol/sdk/types.js';
import type { configTable, parseConfig } from '../src/registry.js';
import type { processControl } from '../src/processes.js';
import type { createServer } from '../src/server.js';

export const TOOLS_PAGE: 'docs/tools.md';
export const CONFIGURATION_PAGE: 'docs/configuration.md';
export const GENERATED_PAGES: ReadonlyArray<'docs/tools.md' | 'docs/configuration.md'>;

/** The modules the pages are made from: the built dist/ or the sources. */
export interface DocsCode {
  createServer: typeof createServer;
  parseConfig: typeof parseConfig;
  configTable: typeof configTable;
  processControl: typeof processControl;
}

export interface DocsFacts {
  tools: Tool[];
  settingsTable: string;
}

export function docsFacts(code: DocsCode, root: string): Promise<DocsFacts>;
export function renderDocs(pages: Readonly<Record<string, string>>, facts: DocsFacts): Record<string, string>;
