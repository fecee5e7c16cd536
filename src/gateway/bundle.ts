/** Reads a model bundle (docs/BUNDLE.md): manifest, catalog and the paths of the Triton repository and retriever. */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import { AppError } from '../shared/errors.js';
import type { Catalog, CatalogItem } from './domain/ports.js';

const manifestSchema = z.object({
  format: z.literal(1),
  model_version: z.string().min(1),
  model_repository: z.string().min(1),
  models: z.object({
    lower: z.string().min(1),
    upper: z.string().min(1),
    ensemble: z.string().min(1),
    version: z.string().default('1'),
  }),
  d_model: z.number().int().positive(),
  window: z.number().int().positive(),
  max_memory: z.number().int().positive(),
  max_history: z.number().int().positive(),
  top_k: z.number().int().positive(),
  special_tokens: z.object({ pad: z.number().int(), bos: z.number().int(), unk: z.number().int() }),
  retriever: z.object({ file: z.string().min(1) }).passthrough(),
  catalog: z
    .array(z.object({ item_id: z.string(), token: z.number().int(), title: z.string() }))
    .min(1)
    .refine(
      (c) => c.every((item, j) => item.token === (c[0]?.token ?? 0) + j),
      'catalog tokens must be consecutive (token = first item token + row)',
    ),
  /** Serving policy decided from the training data; absent in older bundles. */
  policy: z
    .object({
      exclude_consumed: z.boolean(),
      memory_k: z.number().int().min(0),
      repeat_rate: z.number().optional(),
      trained_with_exclusion: z.boolean().optional(),
      reason: z.string().optional(),
    })
    .passthrough()
    .optional(),
});

export type Manifest = z.infer<typeof manifestSchema>;

export type { CatalogItem };

/** A loaded bundle: the domain's Catalog port plus what the adapters and start-up need. */
export interface Bundle extends Catalog {
  dir: string;
  manifest: Manifest;
  modelVersion: string;
  modelRepository: string;
  retrieverPath: string;
  dModel: number;
  window: number;
  maxMemory: number;
  catalog: CatalogItem[];
  /** Bytes of the packed `exclude_mask` input: ceil(catalog size / 8). */
  maskBytes: number;
  policy: BundlePolicy;
}

/** What the bundle says to serve by default (docs/BUNDLE.md); bundles without a policy get DEFAULT_POLICY. */
export interface BundlePolicy {
  excludeConsumed: boolean;
  memoryK: number;
  reason: string;
}

export const DEFAULT_POLICY: BundlePolicy = {
  excludeConsumed: false,
  memoryK: 1,
  reason: 'bundle has no policy (exported before it existed)',
};

export async function loadBundle(dir: string): Promise<Bundle> {
  const manifestPath = path.resolve(dir, 'manifest.json');
  let raw: unknown;
  try {
    raw = JSON.parse(await readFile(manifestPath, 'utf8'));
  } catch (error) {
    throw new AppError('FAILED_PRECONDITION', `cannot read bundle manifest ${manifestPath}`, {
      cause: error,
    });
  }
  const parsed = manifestSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new AppError(
      'FAILED_PRECONDITION',
      `invalid bundle manifest ${manifestPath}: ${issue?.path.join('.') ?? ''} ${issue?.message ?? ''}`.trim(),
    );
  }
  const manifest = parsed.data;
  const catalog: CatalogItem[] = manifest.catalog.map((c) => ({
    itemId: c.item_id,
    token: c.token,
    title: c.title,
  }));
  const byId = new Map(catalog.map((c) => [c.itemId, c]));
  const byToken = new Map(catalog.map((c) => [c.token, c]));
  const base = path.dirname(manifestPath);
  return {
    dir: base,
    manifest,
    modelVersion: manifest.model_version,
    modelRepository: path.resolve(base, manifest.model_repository),
    retrieverPath: path.resolve(base, manifest.retriever.file),
    dModel: manifest.d_model,
    window: manifest.window,
    maxMemory: manifest.max_memory,
    topK: manifest.top_k,
    tokens: manifest.special_tokens,
    tokenOf: (itemId) => byId.get(itemId)?.token,
    itemOf: (token) => byToken.get(token),
    catalog,
    size: catalog.length,
    itemTokenBase: catalog[0]?.token ?? 0,
    maskBytes: (catalog.length + 7) >> 3,
    policy:
      manifest.policy === undefined
        ? DEFAULT_POLICY
        : {
            excludeConsumed: manifest.policy.exclude_consumed,
            memoryK: Math.min(manifest.policy.memory_k, manifest.max_memory),
            reason: manifest.policy.reason ?? '',
          },
  };
}
