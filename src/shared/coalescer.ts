/**
 * Coalesces concurrent calls into batched ones: requests submitted within `delayMs` of the first one waiting (or
 * until `maxBatch` are waiting) go out as one `run(batch)` call, and each caller gets its own row of the result.
 * A caller whose signal fires leaves the batch at once: still waiting, it is taken out before the batch is sent;
 * already sent, its promise rejects now and its row is dropped when the batch returns. The batch call itself is
 * aborted only when every one of its callers has left. `delayMs` 0 batches what arrives within one turn of the
 * event loop (flushed on setImmediate), which adds no timer latency.
 */
import { abortError, AppError, toAppError } from './errors.js';

export interface CoalescerOptions<Req, Res> {
  /** Most requests per batch; a full batch is sent at once. */
  maxBatch: number;
  /** How long the first waiting request may wait for others (ms; 0 = the current event-loop turn). */
  delayMs: number;
  /** Runs one batch; resolves with one result per request, in order. */
  run: (batch: Req[], signal: AbortSignal) => Promise<Res[]>;
}

interface Waiting<Req, Res> {
  request: Req;
  resolve: (value: Res) => void;
  reject: (error: unknown) => void;
  signal: AbortSignal | undefined;
  onAbort: (() => void) | undefined;
  settled: boolean;
  /** The batch it went out in; undefined while it waits. */
  sent: SentBatch | undefined;
}

/** A batch on its way: aborted once all of its callers have left. */
interface SentBatch {
  open: number;
  controller: AbortController;
}

export class Coalescer<Req, Res> {
  private queue: Waiting<Req, Res>[] = [];
  private timer: NodeJS.Timeout | NodeJS.Immediate | undefined;
  /** Batches sent, and requests in them (execution vs. inference counts, as a model server reports them). */
  batches = 0;
  requests = 0;

  constructor(private readonly o: CoalescerOptions<Req, Res>) {
    if (!(o.maxBatch >= 1)) throw new Error('maxBatch must be at least 1');
  }

  submit(request: Req, signal?: AbortSignal): Promise<Res> {
    if (signal?.aborted === true) return Promise.reject(abortError(signal));
    return new Promise<Res>((resolve, reject) => {
      const entry: Waiting<Req, Res> = {
        request,
        resolve,
        reject,
        signal,
        onAbort: undefined,
        settled: false,
        sent: undefined,
      };
      if (signal !== undefined) {
        // One listener per call covers both states: waiting (taken out of the queue) and sent (leaves its batch).
        entry.onAbort = () => {
          const { sent } = entry;
          if (sent === undefined) {
            const index = this.queue.indexOf(entry);
            if (index >= 0) this.queue.splice(index, 1);
          } else if (!entry.settled && --sent.open === 0) {
            sent.controller.abort(new AppError('CANCELLED', 'every caller of the batch left'));
          }
          this.settle(entry, () => reject(abortError(signal)));
        };
        signal.addEventListener('abort', entry.onAbort, { once: true });
      }
      this.queue.push(entry);
      if (this.queue.length >= this.o.maxBatch) this.flush();
      else if (this.timer === undefined) {
        this.timer =
          this.o.delayMs > 0
            ? setTimeout(() => this.flush(), this.o.delayMs)
            : setImmediate(() => this.flush());
      }
    });
  }

  private settle(entry: Waiting<Req, Res>, finish: () => void): void {
    if (entry.settled) return;
    entry.settled = true;
    if (entry.onAbort !== undefined) entry.signal?.removeEventListener('abort', entry.onAbort);
    finish();
  }

  private flush(): void {
    if (this.timer !== undefined) {
      clearTimeout(this.timer as NodeJS.Timeout);
      clearImmediate(this.timer as NodeJS.Immediate);
      this.timer = undefined;
    }
    while (this.queue.length > 0) this.send(this.queue.splice(0, this.o.maxBatch));
  }

  private send(batch: Waiting<Req, Res>[]): void {
    this.batches += 1;
    this.requests += batch.length;
    const controller = new AbortController();
    const sent: SentBatch = { open: batch.length, controller };
    for (const entry of batch) entry.sent = sent;
    let running: Promise<Res[]>;
    try {
      running = this.o.run(
        batch.map((entry) => entry.request),
        controller.signal,
      );
    } catch (error) {
      // A runner that throws synchronously fails its batch like one that rejects.
      running = Promise.reject(toAppError(error));
    }
    running.then(
      (results) => {
        if (results.length !== batch.length) {
          const error = new AppError(
            'INTERNAL',
            `batch of ${batch.length} returned ${results.length} results`,
          );
          for (const entry of batch) this.settle(entry, () => entry.reject(error));
          return;
        }
        batch.forEach((entry, i) => this.settle(entry, () => entry.resolve(results[i] as Res)));
      },
      (error: unknown) => {
        for (const entry of batch) this.settle(entry, () => entry.reject(error));
      },
    );
  }
}
