/**
 * The left panel: enable, pipeline name / experiment / description, base image, caching,
 * volumes, sample parameters, KFP host; Compile, Run locally, Upload, Run on Kubeflow with
 * live per-stage progress, cancel, links to what was written, and located errors.
 */
import { ReactWidget } from '@jupyterlab/apputils';
import { NotebookPanel, INotebookTracker } from '@jupyterlab/notebook';
import { JupyterFrontEnd } from '@jupyterlab/application';
import React, { useEffect, useState } from 'react';

import { cancelJob, IJobEvent, IJobView, ILocatedError, pollJob, relativeToRoot, serverConfig, startJob } from './api';
import { checkPipelineName, checkVolume, IPipelineMeta, IVolume, readMeta, writeMeta } from './metadata';
import { IDataflow } from './dataflow';
import { Store } from './store';
import { stageRows } from './progress';

export const PANEL_ID = 'kale-trace-panel';

interface IProps {
  app: JupyterFrontEnd;
  tracker: INotebookTracker;
  store: Store;
  openOutput: (jobId: string, key: string, title: string) => void;
}

const ACTIONS: [string, string][] = [
  ['compile', 'Compile'],
  ['run', 'Run locally'],
  ['upload', 'Upload'],
  ['run-kfp', 'Run on Kubeflow']
];

function sleep(ms: number): Promise<void> {
  return new Promise(resolve => setTimeout(resolve, ms));
}

function useNotebook(tracker: INotebookTracker, store: Store): [NotebookPanel | null, number] {
  const [panel, setPanel] = useState<NotebookPanel | null>(tracker.currentWidget);
  const [version, setVersion] = useState(0);
  useEffect(() => {
    const onChange = () => setPanel(tracker.currentWidget);
    tracker.currentChanged.connect(onChange);
    const onStore = () => setVersion(v => v + 1);
    store.changed.connect(onStore);
    return () => {
      tracker.currentChanged.disconnect(onChange);
      store.changed.disconnect(onStore);
    };
  }, [tracker, store]);
  useEffect(() => {
    if (!panel?.model) {
      return;
    }
    const onMeta = () => setVersion(v => v + 1);
    panel.model.metadataChanged.connect(onMeta);
    return () => {
      panel.model?.metadataChanged.disconnect(onMeta);
    };
  }, [panel, panel?.model]);
  return [panel, version];
}

function Field(props: { label: string; value: string; error?: string | null; id: string; onChange: (v: string) => void; placeholder?: string }) {
  return (
    <label className="kt-field">
      <span>{props.label}</span>
      <input id={props.id} value={props.value} placeholder={props.placeholder} onChange={e => props.onChange(e.target.value)} />
      {props.error ? <span className="kt-invalid">{props.error}</span> : null}
    </label>
  );
}

function Volumes(props: { volumes: IVolume[]; onChange: (v: IVolume[]) => void }) {
  const update = (i: number, change: Partial<IVolume>) =>
    props.onChange(props.volumes.map((v, j) => (i === j ? { ...v, ...change } : v)));
  return (
    <div className="kt-volumes">
      <span>Volumes</span>
      {props.volumes.map((v, i) => (
        <div key={i} className="kt-volume">
          <select value={v.type} onChange={e => update(i, { type: e.target.value })}>
            <option value="pvc">existing claim</option>
            <option value="new_pvc">new claim</option>
          </select>
          <input placeholder="claim name" value={v.name} onChange={e => update(i, { name: e.target.value })} />
          <input placeholder="/mount/path" value={v.mount_point} onChange={e => update(i, { mount_point: e.target.value })} />
          {v.type === 'new_pvc' ? (
            <input placeholder="size (Gi)" value={String(v.size ?? '')} onChange={e => update(i, { size: Number(e.target.value), size_type: 'Gi' })} />
          ) : null}
          <button onClick={() => props.onChange(props.volumes.filter((_, j) => j !== i))}>×</button>
          {checkVolume(v) ? <span className="kt-invalid">{checkVolume(v)}</span> : null}
        </div>
      ))}
      <button className="kt-add-volume" onClick={() => props.onChange([...props.volumes, { type: 'pvc', name: '', mount_point: '' }])}>
        + volume
      </button>
    </div>
  );
}

function ErrorBox(props: { error: ILocatedError; goToCell: (i: number) => void }) {
  const e = props.error;
  const where = [e.notebook, e.cell !== null && e.cell !== undefined ? `cell ${e.cell}` : null, e.step ? `step '${e.step}'` : null]
    .filter(Boolean)
    .join(', ');
  return (
    <div className="kt-error">
      <div className="kt-error-where">{where}</div>
      <div className="kt-error-message">{e.message}</div>
      {e.fix ? <div className="kt-error-fix">fix: {e.fix}</div> : null}
      {e.details ? <pre className="kt-error-details">{e.details}</pre> : null}
      {e.cell !== null && e.cell !== undefined ? (
        <button className="kt-goto" onClick={() => props.goToCell(e.cell as number)}>
          Go to cell {e.cell}
        </button>
      ) : null}
    </div>
  );
}

function Results(props: { view: IJobView; root: string; app: JupyterFrontEnd; openOutput: IProps['openOutput'] }) {
  const { result, done, id } = props.view;
  if (!result) {
    return null;
  }
  const name = (p: string) => p.split('/').pop() as string;
  const outputs = done && Array.isArray(done.outputs) ? (done.outputs as string[]) : [];
  const runDir = done && typeof done.run_dir === 'string' ? (done.run_dir as string) : '';
  return (
    <div className="kt-results">
      <a className="kt-link-py" onClick={() => props.openOutput(id, 'python', name(result.python))}>{name(result.python)}</a>
      <a className="kt-link-yaml" onClick={() => props.openOutput(id, 'yaml', name(result.yaml))}>{name(result.yaml)}</a>
      <a className="kt-link-report" onClick={() => props.openOutput(id, 'report_html', 'Type report: ' + name(result.outdir))}>type report</a>
      <span className="kt-outdir" title={result.outdir}>in {relativeToRoot(props.root, result.outdir)}</span>
      {runDir ? (
        <details className="kt-link-run">
          <summary>run outputs: {outputs.length} files in {relativeToRoot(props.root, runDir)}</summary>
          <ul>{outputs.map(o => <li key={o}>{o.slice(runDir.length + 1)}</li>)}</ul>
        </details>
      ) : null}
      {done && typeof done.url === 'string' ? (
        <a className="kt-link-kfp" href={done.url as string} target="_blank" rel="noreferrer">run in the KFP UI</a>
      ) : null}
    </div>
  );
}

interface IJobState {
  view: IJobView | null;
  events: IJobEvent[];
  requestError: string | null;
}

const NO_JOB: IJobState = { view: null, events: [], requestError: null };

/** One job per notebook path: start, poll until it ends, cancel. */
function useJobs(store: Store) {
  const [jobs, setJobs] = useState<{ [path: string]: IJobState }>({});
  const put = (path: string, state: Partial<IJobState>) => setJobs(all => ({ ...all, [path]: { ...(all[path] ?? NO_JOB), ...state } }));
  const start = async (panel: NotebookPanel, action: string, options: { [key: string]: unknown }) => {
    const path = panel.context.path;
    put(path, { ...NO_JOB });
    try {
      if (store.settings.saveBeforeCompile) {
        await panel.context.save();
      }
      let view = await startJob(path, action, options);
      let events: IJobEvent[] = [...view.events];
      put(path, { view, events });
      while (view.state === 'running') {
        await sleep(400);
        view = await pollJob(view.id, events.length);
        events = [...events, ...view.events];
        put(path, { view, events });
      }
      const compiled = events.find(e => e.kind === 'compiled');
      if (compiled && compiled.flow) {
        store.setDataflow(path, compiled.flow as IDataflow);
      }
    } catch (error) {
      put(path, { requestError: String((error as Error).message ?? error) });
    }
  };
  const cancel = async (path: string) => {
    const view = jobs[path]?.view;
    if (view) {
      put(path, { view: await cancelJob(view.id) });
    }
  };
  return { jobOf: (path: string) => jobs[path] ?? NO_JOB, start, cancel };
}

interface IFormProps {
  panel: NotebookPanel;
  store: Store;
  running: boolean;
  kfpHost: string;
  setKfpHost: (host: string) => void;
  start: (action: string, options: { [key: string]: unknown }) => void;
  cancel: () => void;
}

/** The notebook's pipeline settings (written to kubeflow_notebook) and the action buttons. */
function PipelineForm(props: IFormProps) {
  const model = props.panel.model!;
  const path = props.panel.context.path;
  const raw = model.getMetadata('kubeflow_notebook');
  const { meta } = readMeta(raw);
  const settings = props.store.settings;
  const extra = (model.getMetadata('kale_trace') as { sample_params?: string } | undefined) ?? {};
  const setMeta = (change: Partial<IPipelineMeta>) => model.setMetadata('kubeflow_notebook', writeMeta(raw, { ...meta, ...change }));
  const options = (action: string) => ({
    outdir: settings.outputFolder,
    base_image: meta.docker_image ? '' : settings.baseImage,
    sample_params: extra.sample_params ?? '',
    kfp_host: props.kfpHost,
    experiment: meta.experiment_name,
    wait: action === 'run-kfp'
  });
  return (
    <div className="kt-form">
      <Field id="kt-pipeline-name" label="Pipeline name" value={meta.pipeline_name} placeholder={path.split('/').pop()?.replace('.ipynb', '')}
        error={checkPipelineName(meta.pipeline_name)} onChange={v => setMeta({ pipeline_name: v })} />
      <Field id="kt-experiment" label="Experiment" value={meta.experiment_name} placeholder="Default" onChange={v => setMeta({ experiment_name: v })} />
      <Field id="kt-description" label="Description" value={meta.pipeline_description} onChange={v => setMeta({ pipeline_description: v })} />
      <Field id="kt-base-image" label="Base image" value={meta.docker_image} placeholder={settings.baseImage || 'python:X.Y of the dry run'}
        onChange={v => setMeta({ docker_image: v })} />
      <label className="kt-field kt-check">
        <input type="checkbox" checked={meta.enable_caching} onChange={e => setMeta({ enable_caching: e.target.checked })} /> Caching
      </label>
      <Volumes volumes={meta.volumes} onChange={v => setMeta({ volumes: v })} />
      <Field id="kt-sample-params" label="Sample parameters (dry run only)" value={extra.sample_params ?? ''} placeholder="sample-params.yaml"
        onChange={v => model.setMetadata('kale_trace', { ...extra, sample_params: v })} />
      <Field id="kt-kfp-host" label="KFP host (credentials: the server's environment)" value={props.kfpHost} placeholder="http://localhost:8080" onChange={props.setKfpHost} />
      <div className="kt-buttons">
        {ACTIONS.map(([action, label]) => (
          <button key={action} id={`kt-${action}`} className="jp-mod-styled jp-mod-accept" disabled={props.running} onClick={() => props.start(action, options(action))}>
            {label}
          </button>
        ))}
        {props.running ? <button id="kt-cancel" className="jp-mod-styled jp-mod-warn" onClick={props.cancel}>Cancel</button> : null}
      </div>
    </div>
  );
}

/** A job's live progress, its located error, what it wrote and what changed. */
function JobView(props: { job: IJobState; root: string; app: JupyterFrontEnd; openOutput: IProps['openOutput']; goToCell: (i: number) => void }) {
  const { view, events, requestError } = props.job;
  const changes = events.find(e => e.kind === 'compiled')?.changes as string | null | undefined;
  return (
    <>
      {requestError ? <div className="kt-error"><div className="kt-error-message">{requestError}</div></div> : null}
      {view ? (
        <div className="kt-job" data-state={view.state}>
          <div className="kt-job-state">{view.action}: {view.state}</div>
          <ul className="kt-progress">
            {stageRows(events, view.state).map(r => (
              <li key={r.key} className={`kt-stage kt-stage-${r.state.toLowerCase()}`} data-stage={r.key}>
                <span className="kt-stage-state">{r.state}</span> {r.label}
              </li>
            ))}
          </ul>
          {view.error ? <ErrorBox error={view.error} goToCell={props.goToCell} /> : null}
          <Results view={view} root={props.root} app={props.app} openOutput={props.openOutput} />
          {changes ? <details className="kt-changes"><summary>What changed since the last compile</summary><pre>{changes}</pre></details> : null}
        </div>
      ) : null}
    </>
  );
}

export function PanelView(props: IProps) {
  const [panel] = useNotebook(props.tracker, props.store);
  const jobs = useJobs(props.store);
  const [root, setRoot] = useState('');
  const [kfpHost, setKfpHost] = useState('');
  useEffect(() => {
    serverConfig().then(c => { setRoot(c.root); setKfpHost(h => h || c.kfp_host); }).catch(() => undefined);
  }, []);
  if (!panel?.model) {
    return <div className="kt-panel kt-empty">Open a notebook to tag it and compile it with kale-trace.</div>;
  }
  const model = panel.model;
  const path = panel.context.path;
  const { enabled: hasMeta, meta } = readMeta(model.getMetadata('kubeflow_notebook'));
  const enabled = hasMeta || props.store.settings.enableByDefault;
  const enable = (on: boolean) => {
    if (on) {
      model.setMetadata('kubeflow_notebook', writeMeta(undefined, { ...meta, docker_image: props.store.settings.baseImage }));
    } else {
      model.deleteMetadata('kubeflow_notebook');
    }
    props.store.touch(path);
  };
  const goToCell = (index: number) => {
    props.app.shell.activateById(panel.id);
    panel.content.activeCellIndex = index;
    void panel.content.scrollToItem(index, 'center');
  };
  const job = jobs.jobOf(path);
  return (
    <div className="kt-panel">
      <h2>kale-trace</h2>
      <label className="kt-enable">
        <input type="checkbox" checked={enabled} onChange={e => enable(e.target.checked)} /> Enable for this notebook
      </label>
      {enabled ? (
        <PipelineForm panel={panel} store={props.store} running={job.view?.state === 'running'} kfpHost={kfpHost} setKfpHost={setKfpHost}
          start={(action, options) => void jobs.start(panel, action, options)} cancel={() => void jobs.cancel(path)} />
      ) : null}
      <JobView job={job} root={root} app={props.app} openOutput={props.openOutput} goToCell={goToCell} />
    </div>
  );
}

export function createPanel(props: IProps): ReactWidget {
  const widget = ReactWidget.create(<PanelView {...props} />);
  widget.id = PANEL_ID;
  widget.title.caption = 'kale-trace';
  widget.addClass('kt-panel-widget');
  return widget;
}
