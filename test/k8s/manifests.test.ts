/**
 * The Kubernetes manifests deploy: each overlay (and the reencode Job) renders with `kubectl kustomize`, every
 * rendered object validates against the Kubernetes schemas (kubernetes-models; the ServiceMonitor against the
 * Prometheus Operator's), every ConfigMap, Secret and Service a workload names exists in the same rendering
 * (keys too, for ConfigMaps), every selector selects something, and the production rules hold (no replicas
 * under the HPA, startupProbe and GPU requests on Triton, headless Triton with a dns: target, OTLP over gRPC on
 * 4317, restricted security contexts). Schema validation does not catch unknown fields (the schemas allow them).
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parse, parseAllDocuments } from 'yaml';

const REPO = path.resolve(import.meta.dirname, '../..');

interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
  [field: string]: unknown;
}
type Json = Record<string, unknown>;

/** Services an overlay uses that a documented prerequisite creates (not the kustomization). */
const EXTERNAL_SERVICES: Record<string, string> = {
  'automr-redis-cluster': 'k8s/overlays/production/redis-cluster-values.yaml (Bitnami redis-cluster chart)',
};

function render(dir: string): K8sObject[] {
  const out = execFileSync('kubectl', ['kustomize', path.join(REPO, dir)], { encoding: 'utf8' });
  return parseAllDocuments(out).map((d) => {
    const obj = d.toJSON() as K8sObject;
    // kustomize wraps base64 at 76 columns; the API server's decoder skips line breaks, the schema's "byte" does not.
    const binary = obj.binaryData as Record<string, string> | undefined;
    for (const key of Object.keys(binary ?? {})) binary![key] = binary![key]!.replace(/\s+/g, '');
    return obj;
  });
}

async function validate(obj: K8sObject): Promise<void> {
  const [group, version] = obj.apiVersion.includes('/') ? obj.apiVersion.split('/') : ['', obj.apiVersion];
  const module =
    group === 'monitoring.coreos.com'
      ? `@kubernetes-models/prometheus-operator/${group}/${version}/${obj.kind}`
      : `kubernetes-models/${group === '' ? '' : `${group}/`}${version}/${obj.kind}`;
  const models = (await import(module)) as Record<string, new (o: unknown) => { validate(): void }>;
  const Model = models[obj.kind];
  assert.ok(Model, `no schema for ${obj.apiVersion} ${obj.kind}`);
  new Model(obj).validate();
}

function podSpecs(objects: K8sObject[]): { owner: K8sObject; spec: Json; labels: Record<string, string> }[] {
  return objects
    .filter((o) => ['Deployment', 'StatefulSet', 'DaemonSet', 'Job'].includes(o.kind))
    .map((o) => {
      const template = (o.spec as Json).template as Json;
      return {
        owner: o,
        spec: template.spec as Json,
        labels: ((template.metadata as Json | undefined)?.labels ?? {}) as Record<string, string>,
      };
    });
}

const containersOf = (spec: Json) => [
  ...((spec.initContainers as Json[] | undefined) ?? []),
  ...((spec.containers as Json[] | undefined) ?? []),
];

const matches = (selector: Record<string, string>, labels: Record<string, string>) =>
  Object.entries(selector).every(([k, v]) => labels[k] === v);

function named(objects: K8sObject[], kind: string, name: string): K8sObject | undefined {
  return objects.find((o) => o.kind === kind && o.metadata.name === name);
}

/** ConfigMap/Secret references of every workload, with the ConfigMap keys they need. */
function checkReferences(objects: K8sObject[], where: string): void {
  const needConfigMap = (name: string, key: string | undefined, who: string) => {
    const cm = named(objects, 'ConfigMap', name);
    assert.ok(cm, `${where}: ${who} names ConfigMap ${name}, which is not rendered`);
    if (key !== undefined)
      assert.ok(
        key in ((cm.data as Json | undefined) ?? {}) || key in ((cm.binaryData as Json | undefined) ?? {}),
        `${where}: ConfigMap ${name} has no key ${key} (${who})`,
      );
  };
  const needSecret = (name: string, who: string) =>
    assert.ok(named(objects, 'Secret', name), `${where}: ${who} names Secret ${name}, which is not rendered`);
  for (const { owner, spec } of podSpecs(objects)) {
    const who = `${owner.kind} ${owner.metadata.name}`;
    for (const c of containersOf(spec)) {
      for (const from of (c.envFrom as Json[] | undefined) ?? []) {
        const cmRef = from.configMapRef as { name: string } | undefined;
        const secretRef = from.secretRef as { name: string } | undefined;
        if (cmRef) needConfigMap(cmRef.name, undefined, who);
        if (secretRef) needSecret(secretRef.name, who);
      }
      for (const env of (c.env as Json[] | undefined) ?? []) {
        const valueFrom = env.valueFrom as Json | undefined;
        const cmKey = valueFrom?.configMapKeyRef as { name: string; key: string } | undefined;
        const secretKey = valueFrom?.secretKeyRef as { name: string } | undefined;
        if (cmKey) needConfigMap(cmKey.name, cmKey.key, who);
        if (secretKey) needSecret(secretKey.name, who);
      }
      const mounted = new Set(((spec.volumes as Json[] | undefined) ?? []).map((v) => v.name));
      for (const m of (c.volumeMounts as Json[] | undefined) ?? [])
        assert.ok(mounted.has(m.name), `${where}: ${who} mounts undeclared volume ${String(m.name)}`);
    }
    for (const v of (spec.volumes as Json[] | undefined) ?? []) {
      const cm = v.configMap as { name: string; items?: { key: string }[] } | undefined;
      const secret = v.secret as { secretName: string } | undefined;
      if (cm) {
        needConfigMap(cm.name, undefined, who);
        for (const item of cm.items ?? []) needConfigMap(cm.name, item.key, who);
      }
      if (secret) needSecret(secret.secretName, who);
    }
  }
  for (const hpa of objects.filter((o) => o.kind === 'HorizontalPodAutoscaler')) {
    const target = (hpa.spec as Json).scaleTargetRef as { kind: string; name: string };
    assert.ok(named(objects, target.kind, target.name), `${where}: HPA target ${target.name} missing`);
  }
}

/** Every selector (Service, PDB, NetworkPolicy, ServiceMonitor) selects something rendered. */
function checkSelectors(objects: K8sObject[], where: string): void {
  const pods = podSpecs(objects).map((p) => p.labels);
  const external = (sel: Record<string, string>) => sel['app.kubernetes.io/instance'] === 'automr-redis';
  for (const o of objects) {
    const spec = o.spec as Json | undefined;
    let selector: Record<string, string> | undefined;
    if (o.kind === 'Service') selector = spec?.selector as Record<string, string>;
    if (o.kind === 'PodDisruptionBudget' || o.kind === 'NetworkPolicy') {
      const s = (o.kind === 'PodDisruptionBudget' ? spec?.selector : spec?.podSelector) as Json;
      selector = s.matchLabels as Record<string, string> | undefined;
    }
    if (o.kind === 'ServiceMonitor') {
      const sel = (spec?.selector as Json).matchLabels as Record<string, string>;
      assert.ok(
        objects.some((s) => s.kind === 'Service' && matches(sel, s.metadata.labels ?? {})),
        `${where}: ServiceMonitor ${o.metadata.name} selects no Service`,
      );
      continue;
    }
    if (selector === undefined || Object.keys(selector).length === 0 || external(selector)) continue;
    assert.ok(
      pods.some((labels) => matches(selector, labels)),
      `${where}: ${o.kind} ${o.metadata.name} selects no pod`,
    );
  }
}

/** A `host:port` (optionally `dns:///`, `http://`, `redis://`) in a setting names a rendered Service and its port. */
function checkServiceAddress(objects: K8sObject[], value: string, where: string): void {
  const m = /^(?:[a-z-]+:\/\/\/?)?([a-z0-9-]+)(?:\.[a-z0-9.-]+)?:(\d+)$/.exec(value);
  assert.ok(m, `${where}: cannot read a service address from ${value}`);
  const [, name, port] = m as unknown as [string, string, string];
  if (name in EXTERNAL_SERVICES) return;
  const svc = named(objects, 'Service', name);
  assert.ok(svc, `${where}: ${value} names Service ${name}, which is not rendered`);
  const ports = ((svc.spec as Json).ports as { port: number }[]).map((p) => String(p.port));
  assert.ok(ports.includes(port), `${where}: Service ${name} has no port ${port}`);
}

const gatewayConfig = (objects: K8sObject[]) => {
  const cm = objects.find((o) => o.kind === 'ConfigMap' && o.metadata.name.startsWith('automr-gateway-'));
  assert.ok(cm, 'the gateway ConfigMap is rendered');
  return cm.data as Record<string, string>;
};

function checkCommon(objects: K8sObject[], where: string): void {
  assert.ok(objects.every((o) => o.kind === 'Namespace' || o.metadata.namespace === 'automr'));
  const bundle = objects.find((o) => o.kind === 'ConfigMap' && o.metadata.name.startsWith('automr-bundle-'));
  assert.ok(bundle, `${where}: bundle ConfigMap generated with a content hash (a new bundle rolls the pods)`);
  assert.equal(
    (bundle.data as Json)['manifest.json'],
    readFileSync(path.join(REPO, 'bundle/manifest.json'), 'utf8'),
  );
  assert.ok('retriever.onnx' in (bundle.binaryData as Json));
  for (const { owner, spec } of podSpecs(objects)) {
    const who = `${where}: ${owner.kind} ${owner.metadata.name}`;
    const pod = spec.securityContext as Json;
    assert.equal(pod.runAsNonRoot, true, `${who} runs as non-root`);
    assert.equal(spec.automountServiceAccountToken, false, `${who} mounts no API token`);
    for (const c of containersOf(spec)) {
      const sc = c.securityContext as Json;
      assert.equal(sc.readOnlyRootFilesystem, true, `${who} read-only root filesystem`);
      assert.equal(sc.allowPrivilegeEscalation, false, `${who} no privilege escalation`);
      assert.deepEqual((sc.capabilities as Json).drop, ['ALL'], `${who} drops all capabilities`);
      assert.ok((c.resources as Json | undefined)?.requests, `${who} requests resources`);
    }
  }
}

for (const [dir, extra] of [
  ['k8s/overlays/dev', checkDev],
  ['k8s/overlays/production', checkProduction],
] as const) {
  void describe(dir, () => {
    const objects = render(dir);
    void test('every rendered object validates against its schema', async () => {
      for (const o of objects) await validate(o);
    });
    void test('every referenced ConfigMap, Secret and Service exists; every selector selects', () => {
      checkReferences(objects, dir);
      checkSelectors(objects, dir);
      const config = gatewayConfig(objects);
      checkServiceAddress(objects, config.AUTOMR_MODEL_SERVER!, dir);
      checkServiceAddress(objects, config.AUTOMR_MEMORY_STORE!, dir);
      if (config.OTEL_TRACES_EXPORTER === 'otlp')
        checkServiceAddress(objects, config.OTEL_EXPORTER_OTLP_ENDPOINT!, dir);
    });
    void test('security contexts, resources and the bundle ConfigMap', () => checkCommon(objects, dir));
    void test('overlay-specific rules', () => extra(objects));
  });
}

/** The gateway drains inside its grace period: preStop sleep + drain window + drain bound. */
function checkDrain(objects: K8sObject[]): void {
  const config = gatewayConfig(objects);
  const pod = ((named(objects, 'Deployment', 'automr-gateway')?.spec as Json).template as Json).spec as Json;
  const gateway = (pod.containers as Json[])[0] as Json;
  const preStop = ((gateway.lifecycle as Json).preStop as Json).exec as { command: string[] };
  assert.equal(preStop.command[0], 'sleep', 'preStop keeps serving while endpoints are removed');
  const seconds =
    Number(preStop.command[1]) +
    Number(config.AUTOMR_DRAIN_WINDOW_MS) / 1000 +
    Number(config.AUTOMR_DRAIN_TIMEOUT_MS) / 1000;
  assert.ok(
    seconds < Number(pod.terminationGracePeriodSeconds),
    `drain (${seconds} s) fits the grace period`,
  );
}

function checkDev(objects: K8sObject[]): void {
  checkDrain(objects);
  const config = gatewayConfig(objects);
  assert.equal(config.AUTOMR_MEMORY_STORE, 'redis://redis:6379');
  assert.ok(named(objects, 'Deployment', 'automr-model-server'));
  assert.equal(objects.filter((o) => o.kind === 'HorizontalPodAutoscaler').length, 0);
}

function checkProduction(objects: K8sObject[]): void {
  checkDrain(objects);
  const config = gatewayConfig(objects);
  for (const hpa of objects.filter((o) => o.kind === 'HorizontalPodAutoscaler')) {
    const target = named(objects, 'Deployment', ((hpa.spec as Json).scaleTargetRef as { name: string }).name);
    assert.equal((target?.spec as Json).replicas, undefined, 'no fixed replicas under the HPA');
  }
  assert.ok(named(objects, 'HorizontalPodAutoscaler', 'automr-gateway'));
  const triton = named(objects, 'Deployment', 'triton');
  const tritonPod = ((triton?.spec as Json).template as Json).spec as Json;
  const container = (tritonPod.containers as Json[])[0] as Json;
  assert.ok(container.startupProbe, 'Triton has a startupProbe (slow model loads are not killed)');
  assert.equal(((container.resources as Json).requests as Json)['nvidia.com/gpu'], 1);
  assert.ok(tritonPod.nodeSelector, 'Triton runs on GPU nodes');
  assert.equal((named(objects, 'Service', 'triton')?.spec as Json).clusterIP, 'None', 'headless');
  assert.match(config.AUTOMR_MODEL_SERVER!, /^dns:\/\/\//, 'client-side round robin over the pods');
  assert.equal(config.OTEL_EXPORTER_OTLP_PROTOCOL, 'grpc');
  assert.match(config.OTEL_EXPORTER_OTLP_ENDPOINT!, /:4317$/);
  assert.match(config.AUTOMR_MEMORY_STORE!, /^rediss-cluster:\/\//, 'Redis Cluster over TLS');
  assert.ok(Number(config.AUTOMR_MAX_CONNECTION_AGE_MS) > 0, 'clients rebalance');
  assert.ok(config.AUTOMR_AUTH !== 'none' && config.AUTOMR_TLS_CERT, 'authenticated TLS listener');
  const policies = objects.filter((o) => o.kind === 'NetworkPolicy').map((o) => o.metadata.name);
  for (const p of ['default-deny-ingress', 'triton', 'redis-cluster', 'otel-collector'])
    assert.ok(policies.includes(p), `NetworkPolicy ${p}`);
  // Only the gateway (and the reencode Job) may reach Triton and Redis.
  for (const name of ['triton', 'redis-cluster']) {
    const from = ((named(objects, 'NetworkPolicy', name)?.spec as Json).ingress as Json[])[0]!.from as Json[];
    const apps = from.map((f) => ((f.podSelector as Json).matchLabels as Json)['app.kubernetes.io/name']);
    assert.deepEqual(apps.sort(), ['automr-gateway', 'automr-reencode']);
  }
  assert.ok(objects.some((o) => o.kind === 'ServiceMonitor'));
  const values = parse(
    readFileSync(path.join(REPO, 'k8s/overlays/production/redis-cluster-values.yaml'), 'utf8'),
  ) as Json;
  assert.equal(
    values.fullnameOverride,
    'automr-redis-cluster',
    'the chart creates the Service the gateways use',
  );
}

void describe('k8s/jobs/reencode', () => {
  const objects = render('k8s/jobs/reencode');
  const production = render('k8s/overlays/production');
  void test('validates, and runs `reencode` against the production store and Triton', async () => {
    for (const o of objects) await validate(o);
    checkReferences([...objects, ...production.filter((o) => o.kind === 'Secret')], 'reencode job');
    checkCommon(objects, 'reencode job');
    const job = named(objects, 'Job', 'automr-reencode');
    const args = ((((job?.spec as Json).template as Json).spec as Json).containers as Json[])[0]!.args;
    assert.deepEqual(args, ['node', 'dist/cli/reencode.js']);
    const mine = objects.find(
      (o) => o.kind === 'ConfigMap' && o.metadata.name.startsWith('automr-reencode-'),
    );
    const prod = gatewayConfig(production);
    for (const key of [
      'AUTOMR_MODEL_SERVER',
      'AUTOMR_MEMORY_STORE',
      'AUTOMR_REDIS_USERNAME',
      'AUTOMR_REDIS_PASSWORD_FILE',
      'AUTOMR_REDIS_TLS_CA',
    ])
      assert.equal((mine?.data as Json)[key], prod[key], `${key} as in the production overlay`);
  });
});
