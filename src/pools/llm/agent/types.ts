/** An investigation's stored shapes (JSON, snake_case like the rest of the kind's stored fields). */

/** How the job's investigations run, stored with it (LlmJobOptions.agent). */
export interface AgentJobOptions {
  /** Model requests one investigation may make before it is asked to finish with what it has. */
  max_steps: number;
  /** A later stage's tasks (from_job) have no input of their own to carry paths: they share these. */
  paths?: string[];
}

/** One investigation as stored in inputs.jsonl (a later stage's is `{id, upstream: true}`, its task the template filled). */
export interface AgentTaskInput {
  id: string;
  task: string;
  /** Globs or paths inside the allowed folders the agent may look at; absent: all of them. */
  paths?: string[];
}

/** Default and ceiling of max_steps: a loop that has not finished in this many requests is going round in circles. */
export const DEFAULT_MAX_STEPS = 12;
export const MOST_STEPS = 100;
/** Each step's answer, when the job sets no max_tokens: room for a call or a short answer. */
export const STEP_MAX_TOKENS = 2048;
