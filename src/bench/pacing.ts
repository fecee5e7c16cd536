/**
 * Open-loop arrivals: one at each `start + n × intervalMs` before `end`, each issued with its intended time (so
 * latency is measured from when it should have gone out). Each timer tick issues every arrival whose time has
 * passed, then sleeps until the next one: timers are ~1 ms granular, so at high rates several go out per tick.
 */
export function paceArrivals(
  start: number,
  end: number,
  intervalMs: number,
  issue: (intended: number) => void,
  afterTick?: () => void,
): Promise<void> {
  let sent = 0;
  return new Promise<void>((resolve) => {
    const tick = (): void => {
      const now = Math.min(performance.now(), end);
      for (let intended = start + sent * intervalMs; intended <= now && intended < end;) {
        sent += 1;
        issue(intended);
        intended = start + sent * intervalMs;
      }
      afterTick?.();
      const next = start + sent * intervalMs;
      if (next >= end) {
        resolve();
        return;
      }
      setTimeout(tick, Math.max(0, next - performance.now()));
    };
    tick();
  });
}
