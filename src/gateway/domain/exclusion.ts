/**
 * The per-request exclusion mask sent to the model server with the prompt (docs/BUNDLE.md, `exclude_mask`): one
 * bit per catalog item, packed LSB first, so the upper model ranks only the allowed items before its top-k. A plain
 * Uint8Array of `ceil(N / 8)` bytes: requests of one batch stack their masks along the batch dimension.
 */
import { invalidArgument } from '../../shared/errors.js';
import type { Catalog } from './ports.js';

export class ExclusionMask {
  readonly bits: Uint8Array;
  /** Catalog items currently excluded. */
  count = 0;

  constructor(readonly items: number) {
    this.bits = new Uint8Array((items + 7) >> 3);
  }

  has(index: number): boolean {
    return ((this.bits[index >> 3] as number) & (1 << (index & 7))) !== 0;
  }

  /** Excludes one item index (0 ≤ index < items); already excluded items are not counted twice. */
  exclude(index: number): void {
    const byte = index >> 3;
    const bit = 1 << (index & 7);
    const b = this.bits[byte] as number;
    if ((b & bit) === 0) {
      this.bits[byte] = b | bit;
      this.count++;
    }
  }

  /** Excludes every item `other` excludes (a mask of the same catalog). */
  add(other: ExclusionMask): void {
    const { bits } = this;
    let count = 0;
    for (let i = 0; i < bits.length; i++) {
      let b = ((bits[i] as number) | (other.bits[i] as number)) & 0xff;
      bits[i] = b;
      // Population count of one byte.
      b = b - ((b >> 1) & 0x55);
      b = (b & 0x33) + ((b >> 2) & 0x33);
      count += (b + (b >> 4)) & 0x0f;
    }
    this.count = count;
  }

  /** Excludes every item except `allowed` (a candidate set); call before any `exclude`. */
  excludeAllExcept(allowed: Iterable<number>): void {
    this.bits.fill(0xff);
    const tail = this.items & 7;
    // Bits past the last item stay 0 (the model ignores them; zero keeps the mask canonical).
    if (tail !== 0) this.bits[this.bits.length - 1] = (1 << tail) - 1;
    this.count = this.items;
    for (const index of allowed) {
      const byte = index >> 3;
      const bit = 1 << (index & 7);
      const b = this.bits[byte] as number;
      if ((b & bit) !== 0) {
        this.bits[byte] = b & ~bit;
        this.count--;
      }
    }
  }
}

/** Excludes the catalog items among `itemIds` (ids outside the catalog are ignored). */
export function excludeItems(mask: ExclusionMask, catalog: Catalog, itemIds: Iterable<string>): void {
  for (const itemId of itemIds) {
    const token = catalog.tokenOf(itemId);
    if (token !== undefined) mask.exclude(token - catalog.itemTokenBase);
  }
}

/**
 * A request's own part of the mask: everything outside its candidates (when it names any), then its excluded ids.
 * A candidate set with no catalog item is refused: it could only return nothing.
 */
export function requestMask(
  catalog: Catalog,
  candidateItemIds: readonly string[],
  excludeItemIds: readonly string[],
): ExclusionMask {
  const mask = new ExclusionMask(catalog.size);
  if (candidateItemIds.length > 0) {
    const allowed: number[] = [];
    for (const id of candidateItemIds) {
      const token = catalog.tokenOf(id);
      if (token !== undefined) allowed.push(token - catalog.itemTokenBase);
    }
    if (allowed.length === 0) {
      throw invalidArgument(
        `candidate_item_ids: none of the ${candidateItemIds.length} ids is in the catalog`,
      );
    }
    mask.excludeAllExcept(allowed);
  }
  excludeItems(mask, catalog, excludeItemIds);
  return mask;
}
