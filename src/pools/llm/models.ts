import type { ModelInfo } from './types.js';

export type ModelMatch = { id: string } | { ambiguous: string[] };

/**
 * Which served id a requested name means: the same id (any case), else Ollama's `name:latest`,
 * else the one id that extends it (`name:tag`, LM Studio's `name@q4_k_m`, or instances `name:2`,
 * `name:3` of one model). Several different extensions are ambiguous.
 */
export function matchModel(requested: string, served: readonly string[]): ModelMatch | undefined {
  const a = requested.toLowerCase();
  const exact = served.find((id) => id.toLowerCase() === a) ?? served.find((id) => id.toLowerCase() === `${a}:latest`);
  if (exact !== undefined) return { id: exact };
  const extended = served.filter((id) => id.toLowerCase().startsWith(`${a}:`) || id.toLowerCase().startsWith(`${a}@`));
  const first = extended[0];
  if (first === undefined) return undefined;
  if (extended.length === 1 || extended.every((id) => /:\d+$/.test(id))) return { id: first };
  return { ambiguous: extended };
}

/** True when `requested` names `served` (see matchModel). */
export function modelMatches(requested: string, served: string): boolean {
  const match = matchModel(requested, [served]);
  return match !== undefined && 'id' in match;
}

/** A model that answers chat requests (not an embedding model). */
export function isChatModel(model: ModelInfo): boolean {
  if (model.type !== undefined) return model.type === 'llm' || model.type === 'vlm';
  return !/embed/i.test(model.id);
}
