import { Readable } from 'node:stream';
import type { ExitStatus, SpawnedProcess } from './spawner.js';

/**
 * A process started through the spawn helper, as the server sees it: its output arrives in frames
 * (spawn-helper.ts), and pausing a stream asks the helper to stop reading that pipe, so a worker
 * that writes faster than the server reads waits instead of the server buffering its output.
 */

/** A task's stdout or stderr as the helper relays it; pausing it pauses reading the worker's pipe. */
export class RelayStream extends Readable {
  private paused = false;
  private ended = false;

  constructor(
    private readonly flow: (reading: boolean) => void,
    private readonly gone: () => void,
  ) {
    super({ highWaterMark: 64 * 1024 });
  }

  deliver(chunk: Buffer): void {
    if (this.destroyed) return;
    if (!this.push(chunk) && !this.paused) {
      this.paused = true;
      this.flow(false);
    }
  }

  /** The end of the stream (once; nothing after a destroy). */
  finish(): void {
    if (!this.destroyed && !this.ended) {
      this.ended = true;
      this.push(null);
    }
  }

  override _read(): void {
    if (this.paused) {
      this.paused = false;
      this.flow(true);
    }
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.gone();
    callback(error);
  }
}

/** One process started through the helper. */
export class RelayProcess implements SpawnedProcess {
  readonly stdout: RelayStream;
  readonly stderr: RelayStream;
  readonly exited: Promise<ExitStatus>;
  readonly closed: Promise<void>;
  private resolveExit!: (status: ExitStatus) => void;
  private resolveClosed!: () => void;
  private exitStatus: ExitStatus | undefined;
  private open = 2;

  constructor(
    id: number,
    readonly pid: number,
    send: (message: Record<string, unknown>) => void,
  ) {
    this.exited = new Promise((resolve) => (this.resolveExit = resolve));
    this.closed = new Promise((resolve) => (this.resolveClosed = resolve));
    const stream = (index: number): RelayStream => {
      let ended = false;
      const relay = new RelayStream(
        (reading) => send({ op: reading ? 'resume' : 'pause', id, stream: index }),
        () => {
          if (ended) return;
          ended = true;
          // Destroyed before its end (the pool gave up waiting for a grandchild): stop relaying it.
          send({ op: 'close', id, stream: index });
          this.streamDone();
        },
      );
      relay.once('end', () => {
        if (ended) return;
        ended = true;
        this.streamDone();
      });
      return relay;
    };
    this.stdout = stream(0);
    this.stderr = stream(1);
  }

  exit(status: ExitStatus): void {
    if (this.exitStatus !== undefined) return;
    this.exitStatus = status;
    this.resolveExit(status);
    if (this.open === 0) this.resolveClosed();
  }

  /** The helper died: what it relayed is all there will be. */
  abandon(): void {
    this.stdout.finish();
    this.stderr.finish();
    this.exit({ code: null, signal: 'SIGKILL' });
  }

  private streamDone(): void {
    this.open--;
    if (this.open === 0 && this.exitStatus !== undefined) this.resolveClosed();
  }
}
