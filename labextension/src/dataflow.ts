/**
 * What the compile observed (`dataflow.json`), per notebook cell: the badges a step's first
 * cell shows (inputs `name ← step` and outputs, type, shape, size, marshaller, trace/ast)
 * and the warnings and notes pinned to the cells they concern.
 */

export interface IValue {
  name: string;
  type: string;
  marshaller?: string | null;
  shape?: number[];
  dtype?: string | { [column: string]: string };
  columns?: string[];
  size_bytes?: number;
  source?: string;
  from?: string;
}

export interface IStep {
  name: string;
  display_name: string;
  cells: number[];
  after: string[];
  parameters: string[];
  inputs: IValue[];
  outputs: IValue[];
  dry_run_seconds?: number;
}

export interface IDataflow {
  pipeline: string;
  notebook: string;
  traced: boolean;
  parameters: { name: string; type: string; default: unknown }[];
  steps: IStep[];
  warnings: { step?: string; message: string; cell?: number }[];
  notes: { cell: number | null; message: string; warning: boolean }[];
}

export interface ICellBadges {
  step: IStep | null;
  warnings: string[];
  notes: string[];
}

/** Badges by cell index: a step's on its first cell; warnings on their step's first cell. */
export function badgesByCell(flow: IDataflow): Map<number, ICellBadges> {
  const cells = new Map<number, ICellBadges>();
  const at = (index: number): ICellBadges => {
    let badges = cells.get(index);
    if (!badges) {
      badges = { step: null, warnings: [], notes: [] };
      cells.set(index, badges);
    }
    return badges;
  };
  const firstCell = new Map<string, number>();
  for (const step of flow.steps) {
    if (step.cells.length > 0) {
      firstCell.set(step.name, step.cells[0]);
      at(step.cells[0]).step = step;
    }
  }
  for (const warning of flow.warnings) {
    const index = typeof warning.cell === 'number' ? warning.cell : firstCell.get(warning.step ?? '');
    if (index !== undefined) {
      at(index).warnings.push(warning.message);
    }
  }
  for (const note of flow.notes) {
    if (note.cell !== null) {
      (note.warning ? at(note.cell).warnings : at(note.cell).notes).push(note.message);
    }
  }
  return cells;
}

export function formatSize(bytes: number | undefined): string {
  if (bytes === undefined) {
    return '';
  }
  const units = ['B', 'kB', 'MB', 'GB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit += 1;
  }
  return `${unit === 0 ? value : value.toFixed(1)} ${units[unit]}`;
}

/** One value as a badge's text: `df ← load_data: DataFrame 569×31, 120.5 kB, parquet, trace`. */
export function describe(value: IValue, input: boolean): string {
  const head = input && value.from ? `${value.name} ← ${value.from}` : value.name;
  const details = [value.type + (value.shape ? ' ' + value.shape.join('×') : '')];
  const size = formatSize(value.size_bytes);
  if (size) {
    details.push(size);
  }
  if (value.marshaller) {
    details.push(value.marshaller);
  }
  if (value.source) {
    details.push(value.source);
  }
  return `${head}: ${details.join(', ')}`;
}
