import { checkPipelineName, checkVolume, readMeta, writeMeta } from '../src/metadata';

const kale = {
  experiment: { id: 'e-1', name: 'Default' },
  experiment_name: 'Default',
  pipeline_name: 'breast-cancer',
  pipeline_description: 'two models',
  docker_image: 'python:3.11',
  volumes: [{ type: 'pvc', name: 'data', mount_point: '/data' }],
  snapshot_volumes: false,
  steps_defaults: ['label:team:ml'],
  katib_run: false
};

test('reads what Kale wrote', () => {
  const { enabled, meta } = readMeta(kale);
  expect(enabled).toBe(true);
  expect(meta).toMatchObject({ pipeline_name: 'breast-cancer', experiment_name: 'Default', docker_image: 'python:3.11', enable_caching: true });
  expect(meta.volumes).toHaveLength(1);
});

test('an old notebook with only experiment {name}, and base_image', () => {
  const { meta } = readMeta({ experiment: { id: '', name: 'old' }, base_image: 'img:1' });
  expect(meta.experiment_name).toBe('old');
  expect(meta.docker_image).toBe('img:1');
});

test('no metadata: not enabled', () => {
  expect(readMeta(undefined).enabled).toBe(false);
  expect(readMeta([1]).enabled).toBe(false);
});

test("writes Kale's keys and keeps the others", () => {
  const { meta } = readMeta(kale);
  const out = writeMeta(kale, { ...meta, pipeline_name: 'bc', enable_caching: false });
  expect(out).toMatchObject({ pipeline_name: 'bc', experiment: { id: 'e-1', name: 'Default' }, experiment_name: 'Default', enable_caching: false });
  expect(out.steps_defaults).toEqual(['label:team:ml']);
  expect(out.katib_run).toBe(false);
});

test('a new experiment name drops the old experiment id', () => {
  const { meta } = readMeta(kale);
  expect(writeMeta(kale, { ...meta, experiment_name: 'new' }).experiment).toEqual({ id: '', name: 'new' });
});

test('caching on is the default and not written', () => {
  const { meta } = readMeta({ enable_caching: false });
  expect('enable_caching' in writeMeta({ enable_caching: false }, { ...meta, enable_caching: true })).toBe(false);
});

test('volumes and names validated', () => {
  expect(checkVolume({ type: 'pvc', name: 'data', mount_point: '/data' })).toBeNull();
  expect(checkVolume({ type: 'pvc', name: 'data', mount_point: 'data' })).toMatch(/absolute/);
  expect(checkVolume({ type: 'pvc', name: 'data', mount_point: '/a/../b' })).toMatch(/absolute/);
  expect(checkVolume({ type: 'new_pvc', name: 'new', mount_point: '/x' })).toMatch(/size/);
  expect(checkVolume({ type: 'clone', name: 'x', mount_point: '/x' })).toMatch(/pvc/);
  expect(checkPipelineName('Bad Name')).toMatch(/lowercase/);
  expect(checkPipelineName('ok-1')).toBeNull();
});
