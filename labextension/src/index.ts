/**
 * kale-trace's JupyterLab 4 extension: the left panel, the per-cell editor rows, the type
 * report tab and the settings; the work is done by the server extension (kale_trace.lab).
 */
import { ILabShell, ILayoutRestorer, JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { MainAreaWidget } from '@jupyterlab/apputils';
import { INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';
import { ISettingRegistry } from '@jupyterlab/settingregistry';
import { IFrame, LabIcon } from '@jupyterlab/ui-components';
import { Widget } from '@lumino/widgets';

import { jobFile } from './api';

import { CellRows } from './cellrow';
import { createPanel } from './panel';
import { DEFAULT_SETTINGS, ISettings, Store } from './store';

const PLUGIN_ID = 'kale-trace:plugin';

const ICON = new LabIcon({
  name: 'kale-trace:icon',
  svgstr:
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24"><g class="jp-icon3" fill="#616161">' +
    '<circle cx="5" cy="5" r="3"/><circle cx="19" cy="12" r="3"/><circle cx="5" cy="19" r="3"/>' +
    '<path d="M7 6l10 5v2L7 18v-2l8-4-8-4z"/></g></svg>'
});

/** A main-area tab showing a file a job wrote: the type report rendered, code as text. */
async function openOutput(app: JupyterFrontEnd, jobId: string, key: string, title: string): Promise<void> {
  const id = `kale-trace-${key}`;
  Array.from(app.shell.widgets('main'))
    .filter(w => w.id === id)
    .forEach(w => w.dispose()); // a new compile: show the new file
  const text = await jobFile(jobId, key);
  let content: Widget;
  if (key === 'report_html') {
    const frame = new IFrame({ sandbox: [] }); // the report has no script: none may run
    (frame.node.querySelector('iframe') as HTMLIFrameElement).srcdoc = text;
    content = frame;
  } else {
    content = new Widget();
    const pre = document.createElement('pre');
    pre.className = 'kt-output-text';
    pre.textContent = text;
    content.node.appendChild(pre);
    content.node.style.overflow = 'auto';
  }
  const widget = new MainAreaWidget({ content });
  widget.id = id;
  widget.title.label = title;
  widget.title.closable = true;
  widget.addClass(key === 'report_html' ? 'kt-report-tab' : 'kt-output-tab');
  app.shell.add(widget, 'main');
  app.shell.activateById(id);
}

function activate(
  app: JupyterFrontEnd,
  tracker: INotebookTracker,
  settingRegistry: ISettingRegistry | null,
  restorer: ILayoutRestorer | null,
  labShell: ILabShell | null
): void {
  const store = new Store();
  const panel = createPanel({ app, tracker, store, openOutput: (job, key, title) => void openOutput(app, job, key, title) });
  panel.title.icon = ICON;
  app.shell.add(panel, 'left', { rank: 200 });
  restorer?.add(panel, panel.id);
  tracker.widgetAdded.connect((_, notebook: NotebookPanel) => new CellRows(notebook, store));
  if (settingRegistry) {
    void settingRegistry.load(PLUGIN_ID).then(settings => {
      const apply = () => {
        store.settings = { ...DEFAULT_SETTINGS, ...(settings.composite as unknown as ISettings) };
        tracker.forEach(nb => store.touch(nb.context.path));
      };
      apply();
      settings.changed.connect(apply);
    });
  }
  void labShell;
  console.log('kale-trace: JupyterLab extension activated');
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description: 'Tag, trace, compile and run notebooks as Kubeflow pipelines with kale-trace',
  autoStart: true,
  requires: [INotebookTracker],
  optional: [ISettingRegistry, ILayoutRestorer, ILabShell],
  activate
};

export default plugin;
