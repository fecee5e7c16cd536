/**
 * The model repository is loaded as Triton loads it, and refused where Triton would refuse it; config.pbtxt
 * is read as protobuf text format into the typed ModelConfig, which the ModelConfig RPC returns.
 */
import assert from 'node:assert/strict';
import { cp, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { parseModelConfig } from '../../src/model-server/model-config.js';
import { startModelServer } from '../../src/model-server/server.js';
import { AppError } from '../../src/shared/errors.js';
import { TritonClient } from '../../src/triton/client.js';
import { MODEL_REPOSITORY } from './helpers.js';

const temps: string[] = [];

after(async () => {
  for (const dir of temps) await rm(dir, { recursive: true, force: true });
});

/** A copy of the committed repository (optionally only some models) to break in one way. */
async function copyRepo(models = ['llm_lower', 'llm_upper', 'automr_recommend']): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'automr-repo-'));
  temps.push(dir);
  for (const m of models) await cp(join(MODEL_REPOSITORY, m), join(dir, m), { recursive: true });
  return dir;
}

async function editConfig(repo: string, model: string, edit: (text: string) => string): Promise<void> {
  const path = join(repo, model, 'config.pbtxt');
  await writeFile(path, edit(await readFile(path, 'utf8')));
}

async function refused(repo: string, message: RegExp): Promise<void> {
  const error = await startModelServer({ repository: repo }).then(
    async (s) => {
      await s.close();
      return undefined;
    },
    (e: unknown) => e,
  );
  assert.ok(error instanceof AppError, `expected the repository to be refused (${String(message)})`);
  assert.equal(error.code, 'FAILED_PRECONDITION');
  assert.match(error.message, message);
}

const refusals: [string, (repo: string) => Promise<void>, RegExp, string[]?][] = [
  [
    'broken config syntax',
    (r) => editConfig(r, 'llm_lower', (t) => t.replace('max_batch_size: 64', 'max_batch_size: [')),
    /failed to load 'llm_lower': invalid config.pbtxt '.*llm_lower\/config.pbtxt': expected an integer, got "\["/,
    ['llm_lower'],
  ],
  [
    'a stray non-model directory',
    (r) => mkdir(join(r, 'notes')),
    /failed to load 'notes': no config.pbtxt/,
    ['llm_lower'],
  ],
  [
    'no version folder',
    (r) => rm(join(r, 'llm_lower', '1'), { recursive: true }),
    /at least one version/,
    ['llm_lower'],
  ],
  [
    'a version folder without the model file',
    (r) => rm(join(r, 'llm_lower', '1', 'model.onnx')),
    /model file .* not found/,
    ['llm_lower'],
  ],
  [
    'no platform or backend',
    (r) => editConfig(r, 'llm_lower', (t) => t.replace('platform: "onnxruntime_onnx"', '')),
    /must specify 'platform' or 'backend'/,
    ['llm_lower'],
  ],
  [
    'max_batch_size inconsistent with the ONNX dims',
    (r) =>
      editConfig(r, 'llm_lower', (t) =>
        t.replace('max_batch_size: 64', 'max_batch_size: 0').replace('dynamic_batching { }', ''),
      ),
    /the model expects 2 dimensions .* configuration specifies 1 dimensions/,
    ['llm_lower'],
  ],
  [
    'a datatype the ONNX model does not have',
    (r) => editConfig(r, 'llm_lower', (t) => t.replace('TYPE_INT64', 'TYPE_INT32')),
    /unexpected datatype TYPE_INT32 for input 'input_ids'/,
    ['llm_lower'],
  ],
  [
    'an unknown config field',
    (r) => editConfig(r, 'llm_lower', (t) => `${t}\nmax_batch_sise: 4\n`),
    /invalid config.pbtxt '.*': unknown field "max_batch_sise" for message inference.ModelConfig/,
    ['llm_lower'],
  ],
  [
    'a name that differs from the folder',
    (r) => editConfig(r, 'llm_lower', (t) => t.replace('name: "llm_lower"', 'name: "lower"')),
    /unexpected 'name' 'lower'/,
    ['llm_lower'],
  ],
  [
    'an ensemble step naming an unknown model',
    (r) => rm(join(r, 'llm_upper'), { recursive: true }),
    /ensemble step 1 refers to unknown model 'llm_upper'/,
  ],
  [
    'an ensemble step reading an unknown tensor',
    (r) =>
      editConfig(r, 'automr_recommend', (t) =>
        t.replace('value: "lower_hidden" }\n      input_map', 'value: "nowhere" }\n      input_map'),
      ),
    /ensemble tensor 'nowhere' is neither an ensemble input nor produced by any step/,
  ],
  [
    'an ensemble input whose datatype does not fit the member input',
    (r) =>
      editConfig(r, 'automr_recommend', (t) =>
        t.replace('name: "memory"\n    data_type: TYPE_FP32', 'name: "memory"\n    data_type: TYPE_FP64'),
      ),
    /ensemble tensor 'memory' \(FP64 \[-1,\d+\]\) does not match input 'memory' of model 'llm_upper' \(FP32/,
  ],
  [
    'an ensemble output no step produces',
    (r) =>
      editConfig(r, 'automr_recommend', (t) =>
        t.replace('output_map { key: "top_ids" value: "top_ids" }', ''),
      ),
    /ensemble output 'top_ids' is not produced by any step/,
  ],
];

for (const [name, breakIt, message, models] of refusals) {
  void test(`refuses a repository with ${name}`, async () => {
    const repo = await copyRepo(models);
    await breakIt(repo);
    await refused(repo, message);
  });
}

void test('serves the latest version by default, all versions under version_policy all, ignores root files', async () => {
  const repo = await copyRepo(['llm_lower']);
  await cp(join(repo, 'llm_lower', '1'), join(repo, 'llm_lower', '3'), { recursive: true });
  await mkdir(join(repo, 'llm_lower', 'notes')); // non-numeric folders are not versions
  await writeFile(join(repo, 'README.txt'), 'files at the root are ignored, as in Triton');
  let server = await startModelServer({ repository: repo });
  let client = new TritonClient({ address: server.address });
  try {
    assert.equal(await client.modelReady('llm_lower', '3'), true);
    assert.equal(await client.modelReady('llm_lower', '1'), false);
    assert.deepEqual((await client.modelMetadata('llm_lower')).versions, ['3']);
  } finally {
    client.close();
    await server.close();
  }
  await editConfig(repo, 'llm_lower', (t) => `${t}\nversion_policy: { all { } }\n`);
  server = await startModelServer({ repository: repo });
  client = new TritonClient({ address: server.address });
  try {
    assert.equal(await client.modelReady('llm_lower', '1'), true);
    assert.equal(await client.modelReady('llm_lower', '3'), true);
  } finally {
    client.close();
    await server.close();
  }
});

void test('config.pbtxt: protobuf text format into the typed ModelConfig', () => {
  const config = parseModelConfig(
    `# comment
     name: "m"  platform: 'ensemble'
     max_batch_size: 8
     input [ { name: "a", data_type: TYPE_FP16, dims: [ -1, 4 ] } ]
     input { name: "b" data_type: TYPE_STRING dims: 1 dims: 2 optional: true reshape { shape: [2] } }
     output: [ { name: "c" data_type: TYPE_BOOL dims: [ 1 ] } ]
     version_policy: { specific: { versions: [1, 3] } }
     parameters { key: "k" value: { string_value: "v" } }
     ensemble_scheduling { step [ { model_name: "x" model_version: -1 input_map { key: "i" value: "a" } } ] }`,
  );
  assert.equal(config.name, 'm');
  assert.equal(config.platform, 'ensemble');
  assert.equal(config.max_batch_size, 8);
  assert.deepEqual(
    config.input.map((i) => [i.name, i.data_type, i.dims, i.optional, i.reshape?.shape]),
    [
      ['a', 'TYPE_FP16', [-1, 4], false, undefined],
      ['b', 'TYPE_STRING', [1, 2], true, [2]],
    ],
  );
  assert.deepEqual(config.version_policy?.specific?.versions, [1, 3]);
  assert.equal(config.version_policy?.policy_choice, 'specific');
  assert.deepEqual(config.parameters, { k: { string_value: 'v' } });
  assert.equal(config.scheduling_choice, 'ensemble_scheduling');
  assert.deepEqual(config.ensemble_scheduling?.step[0]?.input_map, { i: 'a' });
  assert.equal(config.ensemble_scheduling?.step[0]?.model_version, -1);
  assert.equal(config.dynamic_batching, undefined); // the unset member of a oneof

  // Refused as protobuf's text parsers refuse them, with what is wrong.
  assert.throws(
    () => parseModelConfig('dynamic_batching { } ensemble_scheduling { }'),
    /oneof "scheduling_choice" is already set/,
  );
  assert.throws(
    () => parseModelConfig('input { data_type: TYPE_NOPE }'),
    /unknown enum value "TYPE_NOPE" for enum inference.DataType/,
  );
  assert.throws(() => parseModelConfig('max_batch_size: "8"'), /expected an integer, got a string/);
  assert.throws(() => parseModelConfig('max_batch_size: 1.5'), /expected an integer/);
  assert.throws(() => parseModelConfig('version_policy { latest { num_versions: -1 } }'), /unsigned field/);
  assert.throws(() => parseModelConfig('name: "a" name: "b"'), /non-repeated field "name" is repeated/);
  assert.throws(() => parseModelConfig('input { name: "a"'), /unexpected end of input/);
  assert.throws(() => parseModelConfig('name: "a'), /unterminated string/);
  assert.throws(
    () => parseModelConfig('input { nme: "a" }'),
    /unknown field "nme" for message inference.ModelInput/,
  );
});

void test('Triton config fields the local server does not act on load, and ModelConfig returns the config as parsed', async () => {
  const repo = await copyRepo(['llm_lower']);
  await editConfig(repo, 'llm_lower', (t) =>
    t
      .replace(
        'dynamic_batching { }',
        `dynamic_batching {
           preferred_batch_size: [ 4, 8 ]
           max_queue_delay_microseconds: 100
           default_queue_policy { timeout_action: DELAY default_timeout_microseconds: 5000 max_queue_size: 16 }
           priority_queue_policy { key: 1 value: { max_queue_size: 4 } }
         }`,
      )
      .concat(
        `
instance_group [ { kind: KIND_CPU count: 2 rate_limiter { resources [ { name: "r" count: 1 } ] } } ]
model_warmup [ { name: "zeros" batch_size: 1
  inputs { key: "input_ids" value: { data_type: TYPE_INT64 dims: [ 4 ] zero_data: true } } } ]
response_cache { enable: false }
model_transaction_policy { decoupled: false }
`,
      ),
  );
  const text = await readFile(join(repo, 'llm_lower', 'config.pbtxt'), 'utf8');
  const parsed = parseModelConfig(text);
  assert.equal(parsed.dynamic_batching?.default_queue_policy?.timeout_action, 'DELAY');
  assert.equal(parsed.dynamic_batching?.priority_queue_policy[1]?.max_queue_size, 4);
  assert.equal(parsed.instance_group[0]?.rate_limiter?.resources[0]?.name, 'r');
  assert.equal(parsed.model_warmup[0]?.inputs.input_ids?.input_data_type, 'zero_data');

  const server = await startModelServer({ repository: repo });
  const client = new TritonClient({ address: server.address });
  try {
    assert.deepEqual(await client.modelConfig('llm_lower'), parsed);
  } finally {
    client.close();
    await server.close();
  }
});
