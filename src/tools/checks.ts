import * as z from 'zod';
import type { ChecksRequest } from '../pools/llm/index.js';

/** The verdict arguments of lmstudio_complete and lmstudio_investigate: one definition for both. */
export const checksFields = {
  checks: z
    .strictObject({
      schema: z.boolean().optional(),
      citations: z.boolean().optional(),
      script: z
        .strictObject({
          worker: z.string().min(1),
          args: z.array(z.string()).optional(),
          timeout_seconds: z.number().positive().optional(),
        })
        .optional(),
      agree: z.number().int().min(2).max(9).optional(),
    })
    .optional()
    .describe(
      'Verify answers: schema, citations (lines exist, quotes match), script (a worker reads the answer on stdin; exit 0 accepts), agree: k samples, majority wins. Failing: re-asked with the reasons, then escalate_model, else verified false.',
    ),
  escalate_model: z.string().min(1).optional().describe('A bigger model for answers still failing checks.'),
};

/** lmstudio_investigate's: the same fields, described once in lmstudio_complete (every definition is sent with every request). */
export const investigateChecksFields = {
  checks: checksFields.checks.describe("As lmstudio_complete's checks; citations are the agent's own."),
  escalate_model: checksFields.escalate_model,
};

/** The checks as the kind's planners take them. */
export function checksOf(args: {
  checks?: z.infer<typeof checksFields.checks> | undefined;
  escalate_model?: string | undefined;
}): { checks?: ChecksRequest | undefined; escalateModel?: string | undefined } {
  const { checks } = args;
  const script = checks?.script && {
    worker: checks.script.worker,
    args: checks.script.args,
    timeoutSeconds: checks.script.timeout_seconds,
  };
  return {
    checks: checks && { schema: checks.schema, citations: checks.citations, script, agree: checks.agree },
    escalateModel: args.escalate_model,
  };
}
