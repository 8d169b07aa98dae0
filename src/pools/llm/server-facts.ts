/** What kind of server an endpoint turned out to be, read from the server itself (probe.ts), never from its port. */
export type ServerFlavor = 'lmstudio' | 'llama-server' | 'ollama' | 'vllm' | 'openai';

/** Where a figure came from: the server said it, a past answer taught it, or nothing did and this is the default. */
export type FigureSource = 'server' | 'learned' | 'default';

/** Parallel slots as the server reports them. */
export interface SlotFacts {
  /** Requests the server decodes together (llama-server total_slots, LM Studio `parallel`, Ollama's loaded runners). */
  total: number;
  /** Slots working now, where the server tells (llama-server `/slots`). */
  busy?: number;
}

/** What one probe of an endpoint learned beyond its model list. */
export interface ServerFacts {
  flavor: ServerFlavor;
  slots?: SlotFacts;
  /** llama-server started with --models-dir (router mode): models load and unload through /models/load. */
  router?: boolean;
  /** The server listed more models than are kept (MOST_MODELS, loaded ones first): how many it listed. */
  modelsListed?: number;
}

/**
 * Bounds on what a server may say about itself: a limit past the most a config may set (256), a
 * context past any real model's, an id a person could not read or a client would not send, a list
 * longer than anyone picks from are a broken or hostile server, not facts to schedule on.
 */
export const MOST_SLOTS = 256;
export const MOST_CONTEXT_TOKENS = 16 * 1024 * 1024;
export const MOST_MODEL_ID_CHARS = 256;
export const MOST_MODELS = 1000;
