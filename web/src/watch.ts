// Follows a job's WatchJob stream: resumes after the last event applied, so a
// dropped connection or a reload loses nothing and repeats nothing, and
// reconnects on its own with exponential backoff.

import { describe, isTransient, jobs, type Problem } from "./api";
import type { JobEvent } from "./gen/mangakai/v1/common_pb";
import { isActive } from "./labels";

export type WatchStatus =
  | { kind: "live" }
  | { kind: "reconnecting"; inSeconds: number; attempt: number }
  | { kind: "ended" }
  | { kind: "failed"; problem: Problem };

const FIRST_DELAY_MS = 500;
const MAX_DELAY_MS = 15_000;

export class JobWatch {
  private readonly abort = new AbortController();
  private last: bigint;

  constructor(
    private readonly name: string,
    after: bigint,
    private readonly onEvent: (event: JobEvent) => void,
    private readonly onStatus: (status: WatchStatus) => void,
  ) {
    this.last = after;
    void this.run();
  }

  stop(): void {
    this.abort.abort();
  }

  private async run(): Promise<void> {
    let attempt = 0;
    const signal = this.abort.signal;
    while (!signal.aborted) {
      let ended = false;
      try {
        this.onStatus({ kind: "live" });
        const stream = jobs.watchJob({ name: this.name, afterSequence: this.last }, { signal });
        for await (const event of stream) {
          if (event.sequence <= this.last) continue; // already applied
          this.last = event.sequence;
          attempt = 0;
          this.onEvent(event);
          ended = event.terminal;
        }
        // The server ends the stream after the event that ends the job's run, or at once when
        // the job has ended and nothing follows `last`. Anything else was a cut connection.
        if (ended || (await this.hasEnded())) {
          this.onStatus({ kind: "ended" });
          return;
        }
      } catch (err) {
        if (signal.aborted) return;
        if (!isTransient(err)) {
          this.onStatus({ kind: "failed", problem: describe(err) });
          return;
        }
      }
      const delay = Math.min(MAX_DELAY_MS, FIRST_DELAY_MS * 2 ** attempt) * (0.75 + Math.random() / 2);
      attempt += 1;
      this.onStatus({ kind: "reconnecting", inSeconds: Math.ceil(delay / 1000), attempt });
      await sleep(delay, signal);
    }
  }

  private async hasEnded(): Promise<boolean> {
    try {
      const job = await jobs.getJob({ name: this.name }, { signal: this.abort.signal });
      return !isActive(job.state) && job.lastEventSequence <= this.last;
    } catch {
      return false;
    }
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = window.setTimeout(resolve, ms);
    signal.addEventListener("abort", () => {
      window.clearTimeout(timer);
      resolve();
    });
  });
}
