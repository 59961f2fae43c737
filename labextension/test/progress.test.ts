import { stageRows } from '../src/progress';
import { IJobEvent } from '../src/api';

const p = (stage: string, extra: Partial<IJobEvent> = {}): IJobEvent => ({ kind: 'progress', stage, ...extra });

test('each dry-run step is a row, done when the next stage starts', () => {
  const rows = stageRows([p('load'), p('dry-run', { step: 'a' }), p('dry-run', { step: 'b' })], 'running');
  expect(rows.map(r => [r.key, r.state])).toEqual([['dry-run:a', 'done'], ['dry-run:b', 'running']]);
});

test('local steps take the state the runner reported', () => {
  const events = [p('compile'), p('local-step', { step: 'a', state: 'running' }), p('local-step', { step: 'a', state: 'success' }),
    p('local-step', { step: 'b', state: 'running' })];
  const rows = stageRows(events, 'running');
  expect(rows.map(r => [r.key, r.state])).toEqual([['compile:', 'done'], ['local:a', 'success'], ['local:b', 'running']]);
});

test('a finished job ends what still ran: done, failed or stopped', () => {
  const events = [p('dry-run', { step: 'a' })];
  expect(stageRows(events, 'succeeded')[0].state).toBe('done');
  expect(stageRows(events, 'failed')[0].state).toBe('failed');
  expect(stageRows(events, 'cancelled')[0].state).toBe('stopped');
});
