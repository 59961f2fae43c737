import { badgesByCell, describe as describeValue, formatSize, IDataflow } from '../src/dataflow';

const flow: IDataflow = {
  pipeline: 'p',
  notebook: 'n.ipynb',
  traced: true,
  parameters: [],
  steps: [
    { name: 'load', display_name: 'load', cells: [3, 4], after: [], parameters: [], inputs: [],
      outputs: [{ name: 'df', type: 'pandas.DataFrame', shape: [569, 31], size_bytes: 120500, marshaller: 'parquet', source: 'trace' }] },
    { name: 'train', display_name: 'train', cells: [6], after: ['load'], parameters: ['seed'],
      inputs: [{ name: 'df', type: 'pandas.DataFrame', from: 'load', marshaller: 'parquet', source: 'trace' }], outputs: [] }
  ],
  warnings: [{ step: 'train', message: 'hidden RNG state' }],
  notes: [{ cell: 0, message: 'untagged cells left out', warning: true }, { cell: null, message: 'global', warning: false }]
};

test('badges sit on each step first cell, warnings on their step', () => {
  const cells = badgesByCell(flow);
  expect(cells.get(3)?.step?.name).toBe('load');
  expect(cells.has(4)).toBe(false);
  expect(cells.get(6)?.warnings).toEqual(['hidden RNG state']);
  expect(cells.get(0)?.warnings).toEqual(['untagged cells left out']);
});

test('values described with producer, type, shape, size, marshaller and source', () => {
  expect(describeValue(flow.steps[0].outputs[0], false)).toBe('df: pandas.DataFrame 569×31, 120.5 kB, parquet, trace');
  expect(describeValue(flow.steps[1].inputs[0], true)).toBe('df ← load: pandas.DataFrame, parquet, trace');
  expect(formatSize(999)).toBe('999 B');
  expect(formatSize(2_500_000)).toBe('2.5 MB');
});
