/**
 * What a job asks of its answers before they are called verified (stored with the job, snake_case
 * like the kind's other stored fields), and what each check came to.
 */
export interface ChecksOptions {
  /** The answer parses and matches the job's json_schema. */
  schema?: boolean;
  /** Every citation in the answer names lines that exist inside the allowed folders, its quote in them. */
  citations?: boolean;
  /** A worker script gets the answer on stdin and accepts it with exit 0; its stdout says why not. */
  script?: { worker: string; args?: string[]; timeout_seconds?: number };
  /** Asked this many times (temperature > 0): the answer most of them give, when it is a majority. */
  agree?: number;
  /** Where an answer that still fails after one re-ask goes: the same prompt to this (bigger) model. */
  escalate_model?: string;
}

/** One check's verdict on one answer. */
export interface CheckOutcome {
  name: 'schema' | 'citations' | 'script' | 'agree';
  ok: boolean;
  reason?: string;
}

/** How long a checker script may take by default. */
export const CHECK_SCRIPT_TIMEOUT_SECONDS = 60;
/** The temperature of agreement samples when the job's is 0 or unset: samples at 0 would all agree. */
export const AGREE_TEMPERATURE = 0.7;
/** Most samples one agreement may ask for. */
export const MOST_AGREE = 9;
