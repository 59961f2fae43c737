import {
  checkStepName,
  earlierSteps,
  editTags,
  kaleAccepts,
  normaliseStepName,
  readTags,
  stepOfCells,
  writeTags
} from '../src/tags';

describe('reading every tag form Kale and papermill wrote', () => {
  test.each([
    ['imports', 'imports'],
    ['functions', 'functions'],
    ['pipeline-parameters', 'pipeline-parameters'],
    ['parameters', 'pipeline-parameters'],
    ['pipeline-metrics', 'pipeline-metrics'],
    ['skip', 'skip']
  ])('special tag %s is kind %s', (tag, kind) => {
    expect(readTags([tag]).kind).toBe(kind);
  });

  test('block: (Kale 0.x/1.x) and step: (1.x/2.x) name the step', () => {
    expect(readTags(['block:load'])).toMatchObject({ kind: 'step', steps: ['load'] });
    expect(readTags(['step:load'])).toMatchObject({ kind: 'step', steps: ['load'] });
  });

  test('block:a;b and two step tags put the cell in both steps', () => {
    expect(readTags(['block:a;b']).steps).toEqual(['a', 'b']);
    expect(readTags(['step:a', 'step:b', 'step:a']).steps).toEqual(['a', 'b']);
  });

  test('prev:a, prev:a;b and the 2019 prev:a:b', () => {
    expect(readTags(['block:c', 'prev:a']).prev).toEqual(['a']);
    expect(readTags(['block:c', 'prev:a;b']).prev).toEqual(['a', 'b']);
    expect(readTags(['block:c', 'prev:a:b', 'prev:b']).prev).toEqual(['a', 'b']);
  });

  test('an empty step: or block: is untagged', () => {
    expect(readTags(['step:']).kind).toBe('none');
    expect(readTags(['block:']).kind).toBe('none');
    expect(readTags([]).kind).toBe('none');
    expect(readTags(undefined).kind).toBe('none');
  });

  test('prev: on an untagged cell is kept (it applies to the step the cell continues)', () => {
    expect(readTags(['prev:a'])).toMatchObject({ kind: 'none', prev: ['a'] });
  });

  test('skip wins over every other tag', () => {
    expect(readTags(['block:a', 'skip', 'prev:b']).kind).toBe('skip');
  });

  test('a special tag wins over step tags, which are kept as written', () => {
    const cell = readTags(['step:a', 'imports', 'prev:b']);
    expect(cell.kind).toBe('imports');
    expect(cell.steps).toEqual([]);
    expect(cell.other).toEqual(['step:a', 'prev:b']);
  });

  test('settings tags are kept verbatim', () => {
    const tags = ['block:train', 'limit:nvidia.com/gpu:1', 'limit:memory:4Gi', 'image:python:3.11',
      'label:team:ml', 'annotation:note:a:b', 'secret:db:password:DB_PASSWORD', 'cache:disabled',
      'retries:2', 'report:true', 'in:x', 'out:y'];
    expect(readTags(tags).settings).toEqual(tags.slice(1));
  });

  test('tags of other tools are kept, non-strings dropped', () => {
    const cell = readTags(['block:a', 'hide-input', 'nbval-skip', 3, ' remove-cell ']);
    expect(cell.other).toEqual(['hide-input', 'nbval-skip', 'remove-cell']);
  });
});

describe('writing tags as Kale writes them', () => {
  test('a step: block:<name>, then prev:, then settings, then others', () => {
    const cell = readTags(['step:train', 'hide-input', 'limit:cpu:2', 'prev:prepare;load']);
    expect(writeTags(cell)).toEqual(['block:train', 'prev:prepare', 'prev:load', 'limit:cpu:2', 'hide-input']);
  });

  test('a special kind is the reserved name alone (plus other tools tags)', () => {
    expect(editTags(['block:a', 'prev:b', 'hide-input'], { kind: 'imports' })).toEqual(['imports', 'hide-input']);
    expect(editTags(['block:a'], { kind: 'pipeline-metrics' })).toEqual(['pipeline-metrics']);
  });

  test("papermill's parameters keeps its spelling when unchanged", () => {
    expect(writeTags(readTags(['parameters']))).toEqual(['parameters']);
    expect(editTags(['parameters'], { kind: 'pipeline-parameters' })).toEqual(['parameters']);
  });

  test('skip is written alone with other tools tags', () => {
    expect(editTags(['block:a', 'prev:b', 'hide-input'], { kind: 'skip' })).toEqual(['skip', 'hide-input']);
  });

  test('renaming keeps dependencies and settings; empty name continues the previous step', () => {
    expect(editTags(['block:a', 'prev:x', 'retries:1'], { step: 'b' })).toEqual(['block:b', 'prev:x', 'retries:1']);
    expect(editTags(['block:a', 'limit:cpu:1'], { step: '' })).toEqual(['limit:cpu:1']);
    expect(editTags(['block:a;c'], { step: 'b' })).toEqual(['block:b;c']);
  });

  test('setting dependencies', () => {
    expect(editTags(['block:c'], { prev: ['a', 'b', 'a', ' '] })).toEqual(['block:c', 'prev:a', 'prev:b']);
    expect(editTags(['block:c', 'prev:a'], { prev: [] })).toEqual(['block:c']);
  });

  test('round trip: what Kale wrote reads back and writes back the same', () => {
    for (const tags of [['block:load'], ['block:b', 'prev:a'], ['imports'], ['skip'], ['functions'],
      ['block:train', 'prev:prepare', 'limit:memory:2Gi']]) {
      expect(writeTags(readTags(tags))).toEqual(tags);
    }
  });

  test('step:/prev:a;b forms are written in Kale extension form', () => {
    expect(writeTags(readTags(['step:b', 'prev:a;c']))).toEqual(['block:b', 'prev:a', 'prev:c']);
  });
});

describe('step names and dependencies', () => {
  const cells = [['imports'], ['block:load-data'], [], ['block:prepare', 'prev:load-data'], ['skip'], ['block:train', 'prev:prepare']];

  test('normalised as kale-trace does', () => {
    expect(normaliseStepName('Load-Data')).toBe('load_data');
    expect(normaliseStepName('1st')).toBe('step_1st');
    expect(normaliseStepName('--')).toBeNull();
  });

  test('which step each cell belongs to', () => {
    expect(stepOfCells(cells)).toEqual([null, 'load-data', 'load-data', 'prepare', null, 'train']);
  });

  test('validation', () => {
    expect(checkStepName('evaluate', cells, 2)).toBeNull();
    expect(checkStepName('', cells, 2)).toBeNull();
    expect(checkStepName('imports', cells, 2)).toMatch(/cell kind/);
    expect(checkStepName('bad name', cells, 2)).toMatch(/letters/);
    expect(checkStepName('load_data', cells, 5)).toMatch(/same pipeline name 'load_data'/);
    expect(checkStepName('prepare', cells, 3)).toBeNull();
  });

  test('depends-on offers earlier steps only', () => {
    expect(earlierSteps(cells, 5)).toEqual(['load-data', 'prepare']);
    expect(earlierSteps(cells, 1)).toEqual([]);
  });

  test('names Kale itself accepts', () => {
    expect(kaleAccepts('load_data')).toBe(true);
    expect(kaleAccepts('load-data')).toBe(false);
  });
});
