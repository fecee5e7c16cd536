/**
 * A small file whose parsed contents are kept current: read at start (a bad file fails start-up), re-read when
 * its modification time or size changes (polling, which also sees the atomic symlink swap Kubernetes does for
 * mounted secrets). A bad new version is logged and the previous contents stay in force.
 */
import { readFileSync, unwatchFile, watchFile, type Stats } from 'node:fs';
import { AppError } from '../../shared/errors.js';
import type { Logger } from '../../shared/logger.js';

export class WatchedFile<T> {
  private current: T;
  private readonly listener: (now: Stats, before: Stats) => void;

  constructor(
    private readonly path: string,
    private readonly parse: (text: string) => T,
    logger: Logger,
    intervalMs = 1000,
  ) {
    this.current = this.load();
    this.listener = (now, before) => {
      if (now.mtimeMs === before.mtimeMs && now.size === before.size && now.ino === before.ino) return;
      try {
        this.current = this.load();
        logger.info({ file: path }, 'reloaded changed file');
      } catch (error) {
        logger.error({ err: error, file: path }, 'changed file is invalid; keeping the previous version');
      }
    };
    watchFile(path, { interval: intervalMs, persistent: false }, this.listener);
  }

  get value(): T {
    return this.current;
  }

  close(): void {
    unwatchFile(this.path, this.listener);
  }

  private load(): T {
    let text: string;
    try {
      text = readFileSync(this.path, 'utf8');
    } catch (error) {
      throw new AppError('FAILED_PRECONDITION', `cannot read ${this.path}: ${(error as Error).message}`, {
        cause: error,
      });
    }
    return this.parse(text);
  }
}
