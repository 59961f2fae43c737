/**
 * Kale's cell tag language and `kubeflow_notebook` metadata, read and written as Kale does.
 *
 * Pure functions, no JupyterLab imports, so jest checks every tag form. Reading follows
 * kale_trace/notebook/tags.py (skip wins, a special tag wins over step tags, `block:a;b`,
 * `prev:a;b` and 2019's `prev:a:b`, empty `step:`); writing follows Kale's extension
 * (`block:<name>`, one `prev:<name>` per dependency, settings tags kept), so a notebook
 * tagged here compiles with Kale and one tagged by Kale reads correctly here.
 */

export const CELL_KINDS = [
  'imports',
  'functions',
  'pipeline-parameters',
  'pipeline-metrics',
  'step',
  'skip',
  'none'
] as const;
export type CellKind = (typeof CELL_KINDS)[number];

/** Special tags and the kind each means (`parameters` is papermill's spelling). */
const SPECIAL: { [tag: string]: CellKind } = {
  imports: 'imports',
  functions: 'functions',
  'pipeline-parameters': 'pipeline-parameters',
  parameters: 'pipeline-parameters',
  'pipeline-metrics': 'pipeline-metrics'
};
/** Step settings tags: kept verbatim, edited in the step settings dialog. */
const SETTING_PREFIXES = [
  'limit:',
  'image:',
  'label:',
  'annotation:',
  'secret:',
  'cache:',
  'retries:',
  'report:',
  'in:',
  'out:',
  'notebook:'
];
export const RESERVED_NAMES = ['imports', 'functions', 'pipeline-parameters', 'pipeline-metrics', 'skip', 'parameters'];

export interface ICellTags {
  kind: CellKind;
  /** Step names as written (`block:a;b` is two); empty for an untagged cell. */
  steps: string[];
  /** Steps this one runs after, as written. */
  prev: string[];
  /** limit:, image:, label:, secret:, cache:, retries:, ... as written. */
  settings: string[];
  /** Tags of other tools (hide-input, nbval-skip, ...) and tags that lost to a special tag. */
  other: string[];
  /** The special tag as written (`parameters` stays papermill's). */
  special?: string;
}

function splitNames(value: string, separators: RegExp): string[] {
  return value
    .split(separators)
    .map(name => name.trim())
    .filter(name => name !== '');
}

function addUnique(list: string[], names: string[]): void {
  for (const name of names) {
    if (!list.includes(name)) {
      list.push(name);
    }
  }
}

/** What one cell's tags say, as kale-trace (and Kale) reads them. */
export function readTags(raw: unknown): ICellTags {
  const tags = (Array.isArray(raw) ? raw : [])
    .filter((t): t is string => typeof t === 'string')
    .map(t => t.trim())
    .filter(t => t !== '');
  const parsed: ICellTags = { kind: 'none', steps: [], prev: [], settings: [], other: [] };
  if (tags.includes('skip')) {
    parsed.kind = 'skip';
    parsed.other = tags.filter(t => t !== 'skip');
    return parsed;
  }
  const special = tags.find(t => t in SPECIAL);
  for (const tag of tags) {
    const colon = tag.indexOf(':');
    const prefix = colon >= 0 ? tag.slice(0, colon) : '';
    const value = colon >= 0 ? tag.slice(colon + 1) : '';
    if (tag === special) {
      continue;
    } else if (special !== undefined && colon >= 0 && ['step', 'block', 'prev'].includes(prefix)) {
      parsed.other.push(tag); // a special tag wins; keep the loser as written
    } else if (prefix === 'step' || prefix === 'block') {
      addUnique(parsed.steps, splitNames(value, /;/));
    } else if (prefix === 'prev') {
      addUnique(parsed.prev, splitNames(value, /[;:]/));
    } else if (SETTING_PREFIXES.some(p => tag.startsWith(p))) {
      parsed.settings.push(tag);
    } else {
      parsed.other.push(tag);
    }
  }
  if (special !== undefined) {
    parsed.kind = SPECIAL[special];
    parsed.special = special;
  } else if (parsed.steps.length > 0) {
    parsed.kind = 'step';
  }
  return parsed;
}

/** The tags to save: Kale's extension's order, `block:` first, then `prev:`, settings. */
export function writeTags(cell: ICellTags): string[] {
  const tags: string[] = [];
  if (cell.kind === 'skip') {
    return ['skip', ...cell.other.filter(t => t !== 'skip')];
  }
  if (cell.kind === 'step' && cell.steps.length > 0) {
    tags.push('block:' + cell.steps.join(';'));
  } else if (cell.kind !== 'step' && cell.kind !== 'none') {
    const keep = cell.special && SPECIAL[cell.special] === cell.kind;
    tags.push(keep ? (cell.special as string) : cell.kind);
    return [...tags, ...cell.other.filter(t => !/^(step|block|prev):/.test(t))];
  }
  tags.push(...cell.prev.map(name => 'prev:' + name));
  tags.push(...cell.settings);
  tags.push(...cell.other.filter(t => !(t in SPECIAL)));
  return tags;
}

/** A cell's tags with a new kind / step name / dependencies, everything else kept. */
export function editTags(
  raw: unknown,
  change: { kind?: CellKind; step?: string; prev?: string[] }
): string[] {
  const cell = readTags(raw);
  if (change.kind !== undefined) {
    cell.kind = change.kind;
    if (change.kind !== 'step') {
      cell.steps = [];
      cell.prev = [];
    }
  }
  if (change.step !== undefined) {
    const name = change.step.trim();
    cell.steps = name === '' ? [] : [name, ...cell.steps.slice(1).filter(s => s !== name)];
    cell.kind = name === '' ? (cell.prev.length > 0 ? 'step' : 'none') : 'step';
  }
  if (change.prev !== undefined) {
    cell.prev = [...new Set(change.prev.map(p => p.trim()).filter(p => p !== ''))];
    if (cell.kind === 'none' && cell.prev.length > 0) {
      cell.kind = 'step'; // `prev:` on an untagged cell applies to the step it continues
    }
  }
  return writeTags(cell);
}

/** kale-trace's normalisation (`data-loading` → `data_loading`), null if impossible. */
export function normaliseStepName(name: string): string | null {
  let normal = name.trim().toLowerCase().replace(/[^a-z0-9_]+/g, '_').replace(/^_+|_+$/g, '');
  if (normal !== '' && /^[0-9]/.test(normal)) {
    normal = 'step_' + normal;
  }
  if (normal === '' || normal.length > 63) {
    return null;
  }
  return normal;
}

/** Step names per cell, in notebook order: the name each code cell belongs to (continuation). */
export function stepOfCells(cells: unknown[][]): (string | null)[] {
  let current: string | null = null;
  return cells.map(raw => {
    const tags = readTags(raw);
    if (tags.kind === 'step' && tags.steps.length > 0) {
      current = tags.steps[0];
    } else if (tags.kind !== 'none' && tags.kind !== 'step') {
      current = null;
      return null;
    }
    return current;
  });
}

/** Why a step name cannot be used for cell `index`, or null when it is fine. */
export function checkStepName(name: string, cells: unknown[][], index: number): string | null {
  const trimmed = name.trim();
  if (trimmed === '') {
    return null; // empty: the cell continues the previous step
  }
  if (RESERVED_NAMES.includes(trimmed)) {
    return `'${trimmed}' is a cell kind, not a step name`;
  }
  if (!/^[A-Za-z0-9_-]+$/.test(trimmed)) {
    return 'use letters, digits, - and _ only';
  }
  const normal = normaliseStepName(trimmed);
  if (normal === null) {
    return 'at most 63 characters, with at least one letter or digit';
  }
  for (let i = 0; i < cells.length; i++) {
    if (i === index) {
      continue;
    }
    // The same name on two cells is one step (Kale merges them); two spellings of one
    // pipeline name are two steps KFP cannot tell apart.
    for (const written of readTags(cells[i]).steps) {
      if (written !== trimmed && normaliseStepName(written) === normal) {
        return `step '${written}' (cell ${i}) has the same pipeline name '${normal}'`;
      }
    }
  }
  return null;
}

/** Steps a cell may depend on: those started by earlier cells, not its own. */
export function earlierSteps(cells: unknown[][], index: number): string[] {
  const own = readTags(cells[index]).steps;
  const names: string[] = [];
  for (let i = 0; i < index; i++) {
    const tags = readTags(cells[i]);
    if (tags.kind === 'step') {
      addUnique(names, tags.steps.filter(s => !own.includes(s)));
    }
  }
  return names;
}

/** Kale says a name needs `[a-z_][a-z0-9_]*`; kale-trace normalises the rest. */
export function kaleAccepts(name: string): boolean {
  return /^[_a-z][_a-z0-9]*$/.test(name);
}
