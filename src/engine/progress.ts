import { boundedProgress, LIVE_PROGRESS } from '../store/records.js';
import type { TaskProgress } from './types.js';

/** The last progress of one running task of this server. */
export interface RunningProgress extends TaskProgress {
  jobId: string;
  index: number;
  /** When it was reported (ISO). */
  updatedAt: string;
  /** What it waits on now (TaskContext.note), also first in the summary. */
  note?: string;
}

/** What one run of a task reports through (TaskContext.progress and .note), and what ends it. */
export interface TaskReporter {
  report: (update: TaskProgress) => void;
  note: (text: string | undefined) => void;
  end: () => void;
}

/**
 * The last progress each running task of this server reported (TaskContext.progress), kept in
 * memory until the task ends: what the live file publishes for people to see. Bounded as live files
 * are (LIVE_PROGRESS): the pool may report anything, as often as it likes.
 */
export class ProgressBoard {
  private readonly latest = new Map<string, RunningProgress>();
  private readonly now: () => Date;

  constructor(now: () => Date) {
    this.now = now;
  }

  /**
   * What one run of a task reports through, and what ends it. A report after the end (a pool's
   * late callback) is dropped, and an end never drops a later run's progress of the same task. A
   * note stands before the last report until taken back.
   */
  open(jobId: string, index: number): TaskReporter {
    const key = `${jobId}#${index}`;
    let ended = false;
    let mine: RunningProgress | undefined;
    let last: ReturnType<typeof boundedProgress>;
    let noted: string | undefined;
    const publish = (): void => {
      if (ended) return;
      if (last === undefined && noted === undefined) {
        if (mine !== undefined && this.latest.get(key) === mine) this.latest.delete(key);
        mine = undefined;
        return;
      }
      const summary = noted === undefined ? (last?.summary ?? '') : last ? `${noted} · ${last.summary}` : noted;
      mine = {
        jobId,
        index,
        updatedAt: this.now().toISOString(),
        ...last,
        summary: summary.slice(0, LIVE_PROGRESS.summary),
      };
      if (noted !== undefined) mine.note = noted;
      this.latest.set(key, mine);
    };
    return {
      report: (update) => {
        try {
          const view = boundedProgress(update);
          if (!view) return;
          last = view;
          publish();
        } catch {
          // Never thrown into the pool's loop: a progress line is worth less than the task.
        }
      },
      note: (text) => {
        noted = typeof text === 'string' && text !== '' ? text.slice(0, LIVE_PROGRESS.summary) : undefined;
        publish();
      },
      end: () => {
        ended = true;
        if (mine !== undefined && this.latest.get(key) === mine) this.latest.delete(key);
      },
    };
  }

  /** The running tasks' last progress, most recent first, at most LIVE_PROGRESS.tasks of them. */
  list(): RunningProgress[] {
    return [...this.latest.values()]
      .sort((a, b) => b.updatedAt.localeCompare(a.updatedAt))
      .slice(0, LIVE_PROGRESS.tasks);
  }
}
