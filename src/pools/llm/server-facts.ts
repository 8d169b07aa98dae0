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
}
