/**
 * The per-cell editor row (Kale's inline cell metadata): kind, step name, depends-on, the
 * step settings dialog, and after a compile the dataflow badges and pinned warnings.
 */
import { Dialog, ReactWidget, showDialog } from '@jupyterlab/apputils';
import { Cell } from '@jupyterlab/cells';
import { NotebookPanel } from '@jupyterlab/notebook';
import { PanelLayout, Widget } from '@lumino/widgets';
import React from 'react';

import { badgesByCell, describe, ICellBadges } from './dataflow';
import { readMeta } from './metadata';
import { Store } from './store';
import { CELL_KINDS, CellKind, checkStepName, earlierSteps, editTags, kaleAccepts, readTags, stepOfCells, writeTags } from './tags';

const KIND_LABELS: { [kind in CellKind]: string } = {
  imports: 'Imports',
  functions: 'Functions',
  'pipeline-parameters': 'Pipeline parameters',
  'pipeline-metrics': 'Pipeline metrics',
  step: 'Pipeline step',
  skip: 'Skip cell',
  none: '(continues above)'
};

/** Every code cell's tags, in order, as lists (markdown cells count as untagged). */
export function notebookTags(panel: NotebookPanel): unknown[][] {
  const cells = panel.model?.cells;
  const out: unknown[][] = [];
  for (let i = 0; cells && i < cells.length; i++) {
    const cell = cells.get(i);
    const tags = cell.type === 'code' ? cell.getMetadata('tags') : [];
    out.push(Array.isArray(tags) ? tags : []);
  }
  return out;
}

const SETTINGS_FIELDS: [string, string, string][] = [
  ['image:', 'Image', 'registry/name:tag'],
  ['limit:cpu:', 'CPU limit', '2'],
  ['limit:memory:', 'Memory limit', '4Gi'],
  ['limit:nvidia.com/gpu:', 'GPUs', '1'],
  ['retries:', 'Retries', '2']
];

/** The step settings dialog's body: typed fields for the common tags, lines for the rest. */
class SettingsBody extends Widget {
  constructor(tags: string[]) {
    super();
    this.addClass('kt-settings');
    const rest = tags.filter(t => !SETTINGS_FIELDS.some(([p]) => t.startsWith(p)) && !t.startsWith('cache:'));
    for (const [prefix, label, placeholder] of SETTINGS_FIELDS) {
      const value = tags.find(t => t.startsWith(prefix))?.slice(prefix.length) ?? '';
      this.node.appendChild(this.row(label, `<input data-prefix="${prefix}" placeholder="${placeholder}">`, value));
    }
    const cache = tags.find(t => t.startsWith('cache:'))?.slice(6) ?? '';
    const select = `<select data-prefix="cache:"><option value="">pipeline default</option><option>enabled</option><option>disabled</option></select>`;
    this.node.appendChild(this.row('Caching', select, cache));
    this.node.appendChild(this.row('Labels, annotations, secrets (one tag a line)', '<textarea rows="4" placeholder="label:team:ml\nsecret:db:password:DB_PASSWORD"></textarea>', rest.join('\n')));
  }

  private row(label: string, html: string, value: string): HTMLElement {
    const row = document.createElement('label');
    row.innerHTML = `<span>${label}</span>${html}`;
    (row.lastElementChild as HTMLInputElement).value = value;
    return row;
  }

  getValue(): string[] {
    const tags: string[] = [];
    this.node.querySelectorAll<HTMLInputElement>('[data-prefix]').forEach(input => {
      if (input.value.trim()) {
        tags.push(input.dataset.prefix + input.value.trim());
      }
    });
    const lines = (this.node.querySelector('textarea') as HTMLTextAreaElement).value;
    return tags.concat(lines.split('\n').map(l => l.trim()).filter(l => l !== ''));
  }
}

function Badges(props: { badges: ICellBadges | undefined }) {
  const b = props.badges;
  if (!b) {
    return null;
  }
  return (
    <div className="kt-badges">
      {b.step ? (
        <div className="kt-dataflow" data-step={b.step.name}>
          {b.step.parameters.length ? <span className="kt-badge kt-param">params: {b.step.parameters.join(', ')}</span> : null}
          {b.step.inputs.map(v => <span key={'i' + v.name} className="kt-badge kt-in" title="input">{describe(v, true)}</span>)}
          {b.step.outputs.map(v => <span key={'o' + v.name} className="kt-badge kt-out" title="output">→ {describe(v, false)}</span>)}
          {!b.step.inputs.length && !b.step.outputs.length ? <span className="kt-badge">no data in or out</span> : null}
        </div>
      ) : null}
      {b.warnings.map((w, i) => <div key={'w' + i} className="kt-badge kt-warning">⚠ {w}</div>)}
      {b.notes.map((n, i) => <div key={'n' + i} className="kt-badge kt-note">{n}</div>)}
    </div>
  );
}

/** One code cell's row; re-rendered whenever any cell's tags or the dataflow change. */
export class CellRow extends ReactWidget {
  constructor(private panel: NotebookPanel, private cell: Cell, private store: Store) {
    super();
    this.addClass('kt-cellrow');
  }

  private get index(): number {
    return this.panel.content.widgets.indexOf(this.cell);
  }

  private setTags(tags: string[]): void {
    if (tags.length) {
      this.cell.model.setMetadata('tags', tags);
    } else {
      this.cell.model.deleteMetadata('tags');
    }
  }

  private async openSettings(): Promise<void> {
    const cell = readTags(this.cell.model.getMetadata('tags'));
    const body = new SettingsBody(cell.settings);
    const result = await showDialog({ title: `Step settings: ${cell.steps[0] ?? ''}`, body, buttons: [Dialog.cancelButton(), Dialog.okButton({ label: 'Save' })] });
    if (result.button.accept) {
      const current = readTags(this.cell.model.getMetadata('tags'));
      current.settings = body.getValue().filter(t => readTags([t]).settings.length === 1);
      this.setTags(writeTags(current));
    }
  }

  render(): JSX.Element | null {
    const index = this.index;
    const path = this.panel.context.path;
    const enabled = readMeta(this.panel.model?.getMetadata('kubeflow_notebook')).enabled || this.store.settings.enableByDefault;
    if (!enabled || index < 0) {
      return null;
    }
    const all = notebookTags(this.panel);
    const cell = readTags(all[index]);
    const name = cell.steps[0] ?? '';
    const continues = stepOfCells(all)[index];
    const invalid = checkStepName(name, all, index);
    const flow = this.store.dataflow(path);
    const badges = flow ? badgesByCell(flow).get(index) : undefined;
    const choices = earlierSteps(all, index);
    return (
      <div className="kt-row" data-kind={cell.kind}>
        <select className="kt-kind" value={cell.kind} onChange={e => this.setTags(editTags(all[index], { kind: e.target.value as CellKind }))}>
          {CELL_KINDS.map(kind => <option key={kind} value={kind}>{KIND_LABELS[kind]}</option>)}
        </select>
        {cell.kind === 'step' || cell.kind === 'none' ? (
          <>
            <input className="kt-step-name" placeholder={continues ? `continues ${continues}` : 'step name'} defaultValue={name}
              onBlur={e => e.target.value.trim() !== name && this.setTags(editTags(all[index], { step: e.target.value }))}
              onKeyDown={e => e.key === 'Enter' && (e.target as HTMLInputElement).blur()} />
            <span className="kt-depends">
              {choices.length ? 'after:' : ''}
              {choices.map(step => (
                <label key={step} className="kt-dep">
                  <input type="checkbox" checked={cell.prev.includes(step)}
                    onChange={e => this.setTags(editTags(all[index], { prev: e.target.checked ? [...cell.prev, step] : cell.prev.filter(p => p !== step) }))} />
                  {step}
                </label>
              ))}
            </span>
            {cell.kind === 'step' ? <button className="kt-settings-button" title="Step settings" onClick={() => void this.openSettings()}>⚙{cell.settings.length ? ` ${cell.settings.length}` : ''}</button> : null}
          </>
        ) : null}
        {invalid ? <span className="kt-invalid">{invalid}</span> : null}
        {!invalid && name && !kaleAccepts(name) ? <span className="kt-hint" title="Kale itself needs [a-z_][a-z0-9_]*; kale-trace normalises it">Kale: {name.replace(/-/g, '_')}</span> : null}
        <Badges badges={badges} />
      </div>
    );
  }
}

/** Keeps one row above every code cell of a notebook, and re-renders them on changes. */
export class CellRows {
  private rows = new Map<Cell, CellRow>();

  constructor(private panel: NotebookPanel, private store: Store) {
    void panel.context.ready.then(() => {
      this.sync();
      panel.model?.cells.changed.connect(() => requestAnimationFrame(() => this.sync()));
      panel.model?.metadataChanged.connect(() => this.update());
      panel.content.modelContentChanged.connect(() => this.update());
    });
    store.changed.connect((_, path) => path === panel.context.path && this.update());
  }

  private sync(): void {
    for (const cell of this.panel.content.widgets) {
      if (cell.model.type !== 'code' || this.rows.has(cell)) {
        continue;
      }
      const row = new CellRow(this.panel, cell, this.store);
      (cell.layout as PanelLayout).insertWidget(0, row);
      this.rows.set(cell, row);
      cell.model.metadataChanged.connect(() => this.update());
      cell.disposed.connect(() => this.rows.delete(cell));
    }
    this.update();
  }

  update(): void {
    this.rows.forEach(row => row.update());
  }
}
