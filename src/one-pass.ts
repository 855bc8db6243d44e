// Background passes (the scheduler's, the webhook worker's) never overlap within a process: a tick while a
// pass runs waits for it, then runs its own.
export function onePassAtATime(pass: () => Promise<void>): { tick(): Promise<void>; idle(): Promise<void> } {
  let running: Promise<void> | null = null;
  return {
    async tick() {
      while (running) await running;
      running = pass();
      try {
        await running;
      } finally {
        running = null;
      }
    },
    /** Resolves once no pass runs. */
    async idle() {
      while (running) await running;
    },
  };
}
