// Types of bundle.mjs for test/bundle.test.ts.
import type { McpbManifestAny } from '@anthropic-ai/mcpb';

export const ENTRY_POINT: string;
export const USER_CONFIG: NonNullable<McpbManifestAny['user_config']>;

/** Builds the bundle (default monitor-mcp-<version>.mcpb in the root) from the built dist/ of `root`. */
export function buildBundle(options?: {
  root?: string;
  out?: string;
}): Promise<{ file: string; bytes: number; manifest: McpbManifestAny }>;

/** The production packages of the lockfile, as `node_modules/…` paths. */
export function productionPackages(root?: string): string[];
