/**
 * The extension in a real JupyterLab, driven in Debian's Chromium: tag through the cell
 * editor, compile and watch per-step progress and the dataflow badges, open the type
 * report, run locally, and a bad tag's error naming its cell.
 */
import { expect, galata, test } from '@jupyterlab/galata';
import { Page } from '@playwright/test';
import * as fs from 'fs';
import * as path from 'path';

const EXAMPLES = path.resolve(__dirname, '..', '..', '..', 'examples');
const SHOTS = path.resolve(__dirname, '..', 'test-results', 'screenshots');

async function openExample(page: Page & any, tmpPath: string, notebook = 'breast_cancer.ipynb', content?: string) {
  if (content !== undefined) {
    await page.contents.uploadContent(content, 'text', `${tmpPath}/${notebook}`);
  } else {
    await page.contents.uploadFile(path.join(EXAMPLES, 'breast_cancer.ipynb'), `${tmpPath}/${notebook}`);
  }
  await page.contents.uploadFile(path.join(EXAMPLES, 'sample-params.yaml'), `${tmpPath}/sample-params.yaml`);
  await page.notebook.openByPath(`${tmpPath}/${notebook}`);
  await page.notebook.activate(notebook);
  await page.sidebar.openTab('kale-trace-panel');
  await expect(page.locator('.kt-panel h2')).toHaveText('kale-trace');
}

async function savedNotebook(page: Page, file: string): Promise<any> {
  const response = await page.request.get(`/api/contents/${file}?content=1&type=notebook`);
  expect(response.ok()).toBeTruthy();
  return (await response.json()).content;
}

async function compile(page: Page, button = '#kt-compile', state = 'succeeded') {
  await page.fill('#kt-sample-params', 'sample-params.yaml');
  await page.click(button);
  await expect(page.locator('.kt-job')).toBeVisible();
  await expect(page.locator('.kt-job')).toHaveAttribute('data-state', state, { timeout: 240000 });
}

function shot(name: string): string {
  fs.mkdirSync(SHOTS, { recursive: true });
  return path.join(SHOTS, name);
}

test.use({ autoGoto: true });

test('tag a cell through the editor row: Kale tags saved', async ({ page, tmpPath }) => {
  await openExample(page, tmpPath);
  const rows = page.locator('.jp-CodeCell .kt-cellrow');
  await expect(rows.first()).toBeVisible();
  // The first code cell is `imports`, as the notebook says.
  await expect(rows.nth(0).locator('select.kt-kind')).toHaveValue('imports');
  // df.head() (code cell 4) is untagged: it continues load-data. Make it step "inspect".
  const headRow = rows.nth(3);
  await expect(headRow.locator('input.kt-step-name')).toHaveAttribute('placeholder', 'continues load-data');
  await headRow.locator('input.kt-step-name').fill('inspect');
  await headRow.locator('input.kt-step-name').press('Enter');
  await headRow.locator('label.kt-dep', { hasText: 'load-data' }).locator('input').check();
  await page.notebook.save();
  const nb = await savedNotebook(page, `${tmpPath}/breast_cancer.ipynb`);
  const head = nb.cells.find((c: any) => c.source.startsWith('df.head()'));
  expect(head.metadata.tags).toEqual(['block:inspect', 'prev:load-data']);
  // Kind: skip replaces the step tags.
  await headRow.locator('select.kt-kind').selectOption('skip');
  await page.notebook.save();
  const again = await savedNotebook(page, `${tmpPath}/breast_cancer.ipynb`);
  expect(again.cells.find((c: any) => c.source.startsWith('df.head()')).metadata.tags).toEqual(['skip']);
  expect(again.metadata.kubeflow_notebook.pipeline_name).toBe('breast-cancer');
  await page.screenshot({ path: shot('tagging.png') });
});

test('compile: per-step progress, dataflow badges, type report tab', async ({ page, tmpPath }) => {
  await openExample(page, tmpPath);
  await compile(page);
  for (const step of ['load_data', 'prepare', 'train_logreg', 'train_forest', 'evaluate']) {
    await expect(page.locator(`.kt-stage[data-stage="dry-run:${step}"]`)).toHaveClass(/kt-stage-done/);
  }
  await expect(page.locator('.kt-stage[data-stage="compile:"]')).toHaveClass(/kt-stage-done/);
  const prepare = page.locator('.kt-dataflow[data-step="prepare"]');
  await expect(prepare.locator('.kt-in')).toContainText(['df ← load_data']);
  await expect(prepare.locator('.kt-out').first()).toContainText('→');
  await expect(page.locator('.kt-dataflow[data-step="evaluate"] .kt-in')).not.toHaveCount(0);
  await page.locator('.kt-dataflow[data-step="train_logreg"]').scrollIntoViewIfNeeded();
  await page.locator('.jp-NotebookPanel').first().screenshot({ path: shot('badges.png') });
  await page.screenshot({ path: shot('panel-and-badges.png') });
  await page.click('.kt-link-report');
  const tab = page.locator('.kt-report-tab');
  await expect(tab).toBeVisible();
  const frame = page.frameLocator('.kt-report-tab iframe');
  await expect(frame.locator('body')).toContainText('prepare');
  await page.screenshot({ path: shot('type-report.png') });
  await page.click('.kt-link-py');
  await expect(page.locator('.kt-output-tab pre')).toContainText('@dsl.pipeline');
});

test.describe('with the output folder set in the settings registry', () => {
  test.use({ mockSettings: { ...galata.DEFAULT_SETTINGS, 'kale-trace:plugin': { outputFolder: 'pipeline-out' } } });

  test('run locally: every step succeeds, into the configured folder', async ({ page, tmpPath }) => {
    await openExample(page, tmpPath);
    await compile(page, '#kt-run');
    const steps = page.locator('.kt-stage[data-stage^="local:"]');
    await expect(steps).toHaveCount(5);
    await expect(page.locator('.kt-stage[data-stage^="local:"].kt-stage-success')).toHaveCount(5);
    await expect(page.locator('.kt-link-run')).toBeVisible();
    await expect(page.locator('.kt-outdir')).toContainText(`${tmpPath}/pipeline-out`);
    await page.screenshot({ path: shot('run-locally.png') });
  });
});

test('a bad tag is an error naming the cell, with go to cell', async ({ page, tmpPath }) => {
  const nb = JSON.parse(fs.readFileSync(path.join(EXAMPLES, 'breast_cancer.ipynb'), 'utf-8'));
  const index = nb.cells.findIndex((c: any) => c.source.join('').startsWith('df.head()'));
  nb.cells[index].metadata.tags = ['stpe:inspect'];
  await openExample(page, tmpPath, 'bad.ipynb', JSON.stringify(nb));
  await compile(page, '#kt-compile', 'failed');
  const error = page.locator('.kt-error');
  await expect(error.locator('.kt-error-where')).toContainText(`cell ${index}`);
  await expect(error.locator('.kt-error-message')).toContainText("unknown tag 'stpe:inspect'");
  await expect(error.locator('.kt-error-fix')).toContainText('step:<name>');
  await page.screenshot({ path: shot('bad-tag.png') });
  await error.locator('.kt-goto').click();
  const active = await page.evaluate(() => (window as any).jupyterapp.shell.currentWidget.content.activeCellIndex);
  expect(active).toBe(index);
});
