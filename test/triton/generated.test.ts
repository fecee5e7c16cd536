/** The committed src/generated/ is what scripts/gen-proto.sh produces from the .proto files under proto/. */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { test } from 'node:test';
import { REPO_ROOT } from './helpers.js';

async function files(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true, recursive: true });
  return entries
    .filter((e) => e.isFile())
    .map((e) => relative(dir, join(e.parentPath, e.name)))
    .sort();
}

void test('src/generated is up to date with proto/ (run npm run gen:proto)', async () => {
  // Inside the repository (for prettier/tsconfig-independent output) but under the git-ignored .cache/.
  await mkdir(join(REPO_ROOT, '.cache'), { recursive: true });
  const out = await mkdtemp(join(REPO_ROOT, '.cache', 'gen-proto-'));
  try {
    execFileSync('bash', ['scripts/gen-proto.sh'], {
      cwd: REPO_ROOT,
      env: { ...process.env, GEN_PROTO_OUT: out },
      stdio: 'pipe',
    });
    const committed = join(REPO_ROOT, 'src/generated');
    const expected = await files(out);
    assert.deepEqual(await files(committed), expected);
    for (const f of expected) {
      assert.equal(await readFile(join(committed, f), 'utf8'), await readFile(join(out, f), 'utf8'), f);
    }
  } finally {
    await rm(out, { recursive: true, force: true });
  }
});
