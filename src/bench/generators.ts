/**
 * Request generators for proto targets: plain-data specs that the load-generator child turns into a
 * `next()` function. Requests are built up front where possible so that the generator itself costs little
 * CPU on the shared cores.
 */

export interface CycleGeneratorSpec {
  kind: 'cycle';
  /** Requests (proto-loader plain objects) issued round-robin. */
  requests: unknown[];
}

export type GeneratorSpec = CycleGeneratorSpec;

export function createGenerator(spec: GeneratorSpec): () => unknown {
  switch (spec.kind) {
    case 'cycle': {
      const { requests } = spec;
      if (requests.length === 0) throw new Error('cycle generator needs at least one request');
      let index = 0;
      return () => {
        const request = requests[index];
        index = (index + 1) % requests.length;
        return request;
      };
    }
  }
}
