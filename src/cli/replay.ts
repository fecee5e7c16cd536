/**
 * `npm run replay -- --dataset DIR --bundle DIR --targets FILE [--addr HOST:PORT]`: served-path parity
 * check (see src/replay/replay.ts). Exits 1 when a metric falls outside the offline interval or the
 * served per-sample ranks disagree with the offline ones. `--write-history FILE` only writes the history
 * before the first targets as the import's CSV.
 */
import { writeFile } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { parseArgs } from 'node:util';
import { renderReplay, runReplay, writeHistoryCsv } from '../replay/replay.js';
import { runMain } from './exit-code.js';

const HELP = `Usage: npm run replay -- --dataset DIR --bundle DIR --targets FILE [options]
  --dataset DIR       the dataset folder the pipeline evaluated (e.g. /work/shared/data/ml-100k)
  --bundle DIR        the evaluated bundle (<out dir>/bundle); its manifest names the model repository
  --targets FILE      <out stem>-test-targets.json written by the pipeline
  --addr HOST:PORT    replay against a running gateway instead of starting one
  --store lmdb|URL    memory store of the started gateway (default lmdb)
  --concurrency N     users replayed in parallel (default 8)
  --limit-users N     replay only the first N users (a smoke check; parity is not judged)
  --top-n N           items requested per Recommend (default 100, capped at the bundle's top_k)
  --max-history N     history kept per user by the started gateway (default: the gateway's own default)
  --exclude-consumed auto|true|false
                      Recommend's exclude_consumed (default auto: the targets file's policy, which the
                      offline automr ranks were computed with)
  --min-agreement X   least share of samples whose served rank equals the offline one (default 0.99)
  --out FILE          also write the JSON report (with every sample's served rank)
  --history ingest|import|preloaded
                      where each user's events before the first target come from (default ingest):
                      import = bulk-imported (npm run import's path) into the started gateway's store
                      before it starts; preloaded = already in the memory of the gateway at --addr
                      (imported from --write-history's file with the same --user-prefix)
  --write-history FILE  write those events as the import's CSV and exit
  --user-prefix P     prefix of the served user ids (default replay-<random>-; give one with
                      --write-history / --history preloaded)
  --redis-prefix P    key prefix of the started gateway on Redis (default a unique one)
Exit code 0 only with parity: every metric inside the offline interval and the agreement reached.`;

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      dataset: { type: 'string' },
      bundle: { type: 'string' },
      targets: { type: 'string' },
      addr: { type: 'string' },
      store: { type: 'string', default: 'lmdb' },
      concurrency: { type: 'string', default: '8' },
      'limit-users': { type: 'string' },
      'top-n': { type: 'string', default: '100' },
      'max-history': { type: 'string' },
      'exclude-consumed': { type: 'string', default: 'auto' },
      'min-agreement': { type: 'string', default: '0.99' },
      out: { type: 'string' },
      history: { type: 'string', default: 'ingest' },
      'write-history': { type: 'string' },
      'user-prefix': { type: 'string' },
      'redis-prefix': { type: 'string' },
      help: { type: 'boolean', default: false },
    },
    strict: true,
  });
  if (
    values.help === true ||
    values.dataset === undefined ||
    values.bundle === undefined ||
    values.targets === undefined
  ) {
    console.log(HELP);
    return values.help === true ? 0 : 2;
  }
  const log = (message: string) => console.error(`[replay] ${message}`);
  const userPrefix = values['user-prefix'] ?? `replay-${randomBytes(3).toString('hex')}-`;
  const limitUsers = values['limit-users'] === undefined ? {} : { limitUsers: Number(values['limit-users']) };
  const writeTo = values['write-history'];
  if (writeTo !== undefined) {
    const written = await writeHistoryCsv(
      {
        datasetDir: values.dataset,
        bundleDir: values.bundle,
        targetsFile: values.targets,
        userPrefix,
        log,
        ...limitUsers,
      },
      writeTo,
    );
    console.log(
      `wrote ${written.events} events of ${written.users} users (user prefix ${userPrefix}) to ${writeTo}`,
    );
    return 0;
  }
  const history = values.history ?? 'ingest';
  if (history !== 'ingest' && history !== 'import' && history !== 'preloaded') {
    console.error('--history is ingest, import or preloaded');
    return 2;
  }
  if (history === 'preloaded' && (values.addr === undefined || values['user-prefix'] === undefined)) {
    console.error('--history preloaded needs --addr and the --user-prefix the history was written with');
    return 2;
  }
  const report = await runReplay({
    datasetDir: values.dataset,
    bundleDir: values.bundle,
    targetsFile: values.targets,
    ...(values.addr === undefined ? {} : { address: values.addr }),
    store: values.store ?? 'lmdb',
    concurrency: Number(values.concurrency ?? 8),
    ...limitUsers,
    topN: Number(values['top-n'] ?? 100),
    ...(values['max-history'] === undefined ? {} : { maxHistory: Number(values['max-history']) }),
    memoryK: 1,
    ...(values['exclude-consumed'] === 'auto' || values['exclude-consumed'] === undefined
      ? {}
      : { excludeConsumed: values['exclude-consumed'] === 'true' }),
    minAgreement: Number(values['min-agreement'] ?? 0.99),
    userPrefix,
    encodingWaitMs: 5_000,
    history,
    ...(values['redis-prefix'] === undefined ? {} : { redisPrefix: values['redis-prefix'] }),
    log,
  });
  console.log(renderReplay(report));
  if (values.out !== undefined) await writeFile(values.out, `${JSON.stringify(report, null, 2)}\n`);
  return report.parity ? 0 : 1;
}

runMain(main);
