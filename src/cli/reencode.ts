/**
 * `npm run reencode -- [gateway options]`: re-encodes every user's memory for the configured bundle ahead of a
 * cut-over, so the new version's gateways start with encoded memories instead of re-encoding lazily. Takes the
 * gateway's options (store, prefix, model server, bundle; `--reencode-rate` users per second,
 * `--reencode-concurrency`), waits for the model server, shows a progress bar on stderr (a line every 10 s
 * when stderr is not a terminal, e.g. in a Kubernetes Job) and exits 0 when every user was encoded, 1 otherwise.
 */
import cliProgress from 'cli-progress';
import { AppError } from '../shared/errors.js';
import { createLogger } from '../shared/logger.js';
import { configHelp, loadConfig } from '../gateway/config.js';
import { reencodeStore } from '../gateway/reencode.js';
import { openToolBackends, waitUntilReady } from '../gateway/tool-wiring.js';

const DEPENDENCY_WAIT_MS = 120_000;

async function main(): Promise<number> {
  let parsed;
  try {
    parsed = loadConfig(process.argv.slice(2));
  } catch (error) {
    console.error(`automr-reencode: ${error instanceof AppError ? error.message : String(error)}`);
    return 2;
  }
  if (parsed.help || parsed.config === undefined) {
    console.log(configHelp().replace('Usage: automr-gateway', 'Usage: npm run reencode --'));
    return 0;
  }
  const config = parsed.config;
  const logger = createLogger({ name: 'automr-reencode', level: config.logLevel });
  const backends = await openToolBackends(config, logger);
  const { bundle, store, modelServer } = backends;
  try {
    // The model server must serve this bundle's version.
    await waitUntilReady(
      [
        [`model server ${config.modelServer}`, () => modelServer.ready()],
        ['memory store', () => store.ready()],
      ],
      DEPENDENCY_WAIT_MS,
    );
    const bar = new cliProgress.SingleBar(
      {
        format:
          'reencode {bar} {value}/{total} users | {rate} users/s | failed {failed} | eta {eta_formatted}',
        stream: process.stderr,
        noTTYOutput: true,
        notTTYSchedule: 10_000,
        etaBuffer: 100,
      },
      cliProgress.Presets.shades_classic,
    );
    const started = performance.now();
    const result = await reencodeStore({
      store,
      modelServer,
      bundle,
      config,
      logger,
      ratePerS: config.reencodeRate,
      concurrency: config.reencodeConcurrency,
      onStart: (total) => bar.start(total, 0, { rate: '0', failed: 0 }),
      onProgress: (done, failed) =>
        bar.update(done, { rate: (done / ((performance.now() - started) / 1000)).toFixed(1), failed }),
    });
    bar.stop();
    console.log(
      `re-encoded ${result.users - result.failed} of ${result.users} users for model version ${bundle.modelVersion} in ${result.seconds.toFixed(1)} s` +
        (result.failed > 0
          ? ` (${result.failed} failed; rerun, or let the gateways encode them when used)`
          : ''),
    );
    return result.failed === 0 ? 0 : 1;
  } finally {
    await backends.close();
  }
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    console.error(`automr-reencode: ${error instanceof AppError ? error.message : String(error)}`);
    process.exit(1);
  },
);
