/**
 * The shutdown of the long-running commands (gateway, consumer, model server): on the first SIGTERM or SIGINT run `drain` once,
 * then exit 0; exit 1 when it fails (logged with its cause) or is still running after `hardStopMs`.
 */
import type { Logger } from '../shared/logger.js';

export function drainOnSignal(
  logger: Logger,
  o: { message: string; hardStopMs: number; drain: (signal: string) => Promise<void> },
): void {
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, o.message);
    const hardStop = setTimeout(() => {
      logger.error(`${o.message}: not done in time; exiting`);
      process.exit(1);
    }, o.hardStopMs);
    hardStop.unref();
    o.drain(signal).then(
      () => process.exit(0),
      (error: unknown) => {
        logger.error({ err: error }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}
