import type { TaskResult } from '../../../engine/types.js';

/** An agreement's samples grouped by what they answered, the largest group first. */
export interface Agreement {
  /** The sample of the largest group that answered first (undefined when none answered). */
  chosen: number | undefined;
  /** How many samples gave the chosen answer, and how many were asked. */
  votes: number;
  asked: number;
  majority: boolean;
  reason?: string;
}

/**
 * The answer most samples gave, when it is more than half of them: answers compared after
 * normalisation (JSON by value, keys in any order; text by its words, case and closing punctuation
 * ignored). A sample that failed votes for nothing.
 */
export function agreement(samples: readonly TaskResult[], answers: ReadonlyArray<string | undefined>): Agreement {
  const groups = new Map<string, number[]>();
  answers.forEach((answer, at) => {
    if (answer === undefined) return;
    const key = normalised(answer);
    groups.set(key, [...(groups.get(key) ?? []), at]);
  });
  const ranked = [...groups.entries()].sort((a, b) => b[1].length - a[1].length || (a[1][0] ?? 0) - (b[1][0] ?? 0));
  const best = ranked[0];
  const asked = samples.length;
  if (best === undefined) return { chosen: undefined, votes: 0, asked, majority: false, reason: 'no sample answered' };
  const votes = best[1].length;
  const majority = votes * 2 > asked;
  const agreement: Agreement = { chosen: best[1][0], votes, asked, majority };
  if (!majority) {
    const shown = ranked
      .slice(0, 3)
      .map(([, at]) => `${JSON.stringify(clip(answers[at[0] ?? 0] ?? ''))} ×${at.length}`)
      .join(', ');
    const failed = asked - ranked.reduce((n, [, at]) => n + at.length, 0);
    agreement.reason = `no majority among ${asked} samples: ${shown}${ranked.length > 3 ? ', …' : ''}${failed > 0 ? `; ${failed} gave no answer` : ''}`;
  }
  return agreement;
}

/** What two answers must share to be the same answer. */
export function normalised(answer: string): string {
  const trimmed = answer.trim();
  if (/^[[{"]/.test(trimmed)) {
    try {
      return `json:${canonical(JSON.parse(trimmed))}`;
    } catch {
      // Text that only looks like JSON.
    }
  }
  return `text:${trimmed
    .replace(/^```\w*\s*|```$/g, '')
    .toLowerCase()
    .replace(/\s+/g, ' ')
    .replace(/[\s.!;:,]+$/, '')
    .trim()}`;
}

/** JSON with its keys sorted, so equal values give equal texts. */
function canonical(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonical(v)}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

function clip(text: string): string {
  const flat = text.replace(/\s+/g, ' ').trim();
  return flat.length > 60 ? `${flat.slice(0, 57)}...` : flat;
}
