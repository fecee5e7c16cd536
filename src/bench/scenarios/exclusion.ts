/**
 * What the consumed-item exclusion adds to one Recommend: the bytes of the `exclude_mask` input in the serialized
 * automr_recommend ModelInfer request (the request the gateway's Triton adapter sends, with and without the mask
 * tensor), and the gateway CPU time to build the mask from a user's consumed ids, a request's exclusions and a
 * candidate set (the domain's own functions, timed back to back).
 */
import { performance } from 'node:perf_hooks';
import { loadBundle } from '../../gateway/bundle.js';
import { excludeItems, requestMask } from '../../gateway/domain/exclusion.js';
import type { ModelInferRequest } from '../../generated/inference/ModelInferRequest.js';
import { loadInferenceProto } from '../../triton/proto.js';
import { encodeRaw, type Tensor } from '../../triton/tensor.js';
import type { ExclusionFigure } from '../report.js';
import type { BenchContext } from './context.js';

/** The ensemble request of one Recommend (prompt bos + 10 items, one memory slot), optionally with the mask. */
function ensembleRequest(ensemble: string, d: number, window: number, mask?: Uint8Array): ModelInferRequest {
  const t = window + 1;
  const inputs: Tensor[] = [
    { name: 'input_ids', datatype: 'INT64', shape: [1, t], data: new BigInt64Array(t).fill(5n) },
    { name: 'attention_mask', datatype: 'INT64', shape: [1, t], data: new BigInt64Array(t).fill(1n) },
    { name: 'memory', datatype: 'FP32', shape: [1, 1, d], data: new Float32Array(d).fill(0.1) },
    { name: 'memory_mask', datatype: 'INT64', shape: [1, 1], data: new BigInt64Array([1n]) },
  ];
  if (mask !== undefined)
    inputs.push({ name: 'exclude_mask', datatype: 'UINT8', shape: [1, mask.length], data: mask });
  return {
    model_name: ensemble,
    model_version: '1',
    id: '',
    inputs: inputs.map((x) => ({ name: x.name, datatype: x.datatype, shape: x.shape })),
    outputs: [{ name: 'top_ids' }, { name: 'top_scores' }],
    raw_input_contents: inputs.map(encodeRaw),
  };
}

function microsPerCall(call: () => void, durationMs: number): { us: number; calls: number } {
  const warmupEnd = performance.now() + Math.min(200, durationMs / 4);
  while (performance.now() < warmupEnd) call();
  let calls = 0;
  const t0 = performance.now();
  const end = t0 + durationMs;
  while (performance.now() < end) {
    for (let i = 0; i < 100; i++) call();
    calls += 100;
  }
  return { us: Math.round(((performance.now() - t0) * 1000 * 100) / calls) / 100, calls };
}

export async function benchExclusion(bundleDir: string, durationMs: number): Promise<ExclusionFigure> {
  const bundle = await loadBundle(bundleDir);
  const ids = bundle.catalog.map((c) => c.itemId);
  const serialize = loadInferenceProto().inference.GRPCInferenceService.service.ModelInfer.requestSerialize;
  const { ensemble, version } = bundle.manifest.models;
  const bytes = (mask?: Uint8Array) =>
    serialize({ ...ensembleRequest(ensemble, bundle.dModel, bundle.window, mask), model_version: version })
      .length;
  const without = bytes();
  const withMask = bytes(new Uint8Array(bundle.maskBytes).fill(0xa5));

  // A user with a full history (100 consumed ids, the history itself again) and a heavy user at the bound.
  const pick = (n: number) => Array.from({ length: n }, (_, i) => ids[(i * 7) % ids.length] as string);
  const history = pick(100);
  const heavy = pick(10_000);
  const candidates = pick(1_000);
  const build = (consumed: string[], cands: string[], excluded: string[]) => () => {
    const mask = requestMask(bundle, cands, excluded);
    excludeItems(mask, bundle, consumed);
    excludeItems(mask, bundle, history);
  };
  const slice = durationMs / 3;
  return {
    catalog_items: bundle.size,
    mask_bytes: bundle.maskBytes,
    infer_request_bytes_without_mask: without,
    infer_request_bytes_with_mask: withMask,
    added_bytes: withMask - without,
    build_us: {
      consumed_100: microsPerCall(build(history, [], []), slice).us,
      consumed_10000: microsPerCall(build(heavy, [], []), slice).us,
      consumed_100_candidates_1000_excluded_100: microsPerCall(build(history, candidates, pick(100)), slice)
        .us,
    },
  };
}

export async function benchExclusionSection(ctx: BenchContext): Promise<void> {
  const figure = await benchExclusion(ctx.options.bundleDir, ctx.options.quick ? 1_500 : 4_500);
  ctx.report.exclusion = figure;
  ctx.log(
    `exclusion: +${figure.added_bytes} bytes per ModelInfer (${figure.infer_request_bytes_without_mask} → ` +
      `${figure.infer_request_bytes_with_mask}); mask build ${JSON.stringify(figure.build_us)} us`,
  );
}
