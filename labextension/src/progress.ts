/** The panel's progress rows, from a job's events (pure, so jest checks it). */
import { IJobEvent } from './api';

export interface IStageRow {
  key: string;
  label: string;
  state: string;
}

/** Per-stage rows from the job's events: each dry-run step, compile, each local step. */
export function stageRows(events: IJobEvent[], jobState: string): IStageRow[] {
  const rows: IStageRow[] = [];
  const find = (key: string) => rows.find(r => r.key === key);
  for (const event of events) {
    if (event.kind !== 'progress' || !event.stage || event.stage === 'info' || event.stage === 'load') {
      continue;
    }
    const last = rows[rows.length - 1];
    if (last && last.state === 'running' && !last.key.startsWith('local:')) {
      last.state = 'done';
    }
    if (event.stage === 'local-step') {
      const key = 'local:' + event.step;
      const row = find(key) ?? { key, label: `run ${event.step}`, state: 'running' };
      row.state = event.state === 'running' ? 'running' : (event.state ?? 'done');
      if (!find(key)) {
        rows.push(row);
      }
    } else {
      const key = event.stage + ':' + (event.step ?? '');
      if (!find(key)) {
        const label = event.stage === 'dry-run' ? `dry run ${event.step}` : event.stage.replace('-', ' ');
        rows.push({ key, label, state: 'running' });
      }
    }
  }
  // A finished job: what still runs ended with it (done, or failed / stopped where it broke).
  const end = { succeeded: 'done', failed: 'failed', cancelled: 'stopped' }[jobState];
  if (end) {
    rows.filter(r => r.state === 'running').forEach(r => (r.state = end));
  }
  return rows;
}

