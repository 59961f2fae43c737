/** The server extension's REST API (/kale-trace/...), through JupyterLab's own connection. */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

export interface IJobEvent {
  kind: 'progress' | 'compiled' | 'done' | 'error' | 'cancelled';
  stage?: string;
  step?: string;
  state?: string;
  message?: string;
  time?: number;
  [key: string]: unknown;
}

export interface ILocatedError {
  message: string;
  notebook?: string | null;
  cell?: number | null;
  cell_source?: string | null;
  step?: string | null;
  fix?: string | null;
  details?: string | null;
  text?: string;
}

export interface IJobView {
  id: string;
  action: string;
  notebook: string;
  state: 'running' | 'succeeded' | 'failed' | 'cancelled';
  events: IJobEvent[];
  next: number;
  result: { [key: string]: string } | null;
  done: { [key: string]: unknown } | null;
  error: ILocatedError | null;
}

async function call<T>(path: string[], init: RequestInit = {}): Promise<T> {
  const settings = ServerConnection.makeSettings();
  const url = URLExt.join(settings.baseUrl, 'kale-trace', ...path);
  const response = await ServerConnection.makeRequest(url, init, settings);
  const text = await response.text();
  const body = text ? JSON.parse(text) : {};
  if (!response.ok) {
    throw new Error(body.message || body.reason || `HTTP ${response.status}`);
  }
  return body as T;
}

export function startJob(path: string, action: string, options: { [key: string]: unknown }): Promise<IJobView> {
  return call<IJobView>(['jobs'], { method: 'POST', body: JSON.stringify({ path, action, options }) });
}

export function pollJob(id: string, since: number): Promise<IJobView> {
  return call<IJobView>(['jobs', `${id}?since=${since}`]);
}

export function cancelJob(id: string): Promise<IJobView> {
  return call<IJobView>(['jobs', id], { method: 'DELETE' });
}

/** A file the job wrote (python, yaml, report_html, report_md, dataflow), as text. */
export async function jobFile(id: string, key: string): Promise<string> {
  const settings = ServerConnection.makeSettings();
  const url = URLExt.join(settings.baseUrl, 'kale-trace', 'jobs', id, 'files', key);
  const response = await ServerConnection.makeRequest(url, {}, settings);
  if (!response.ok) {
    throw new Error(`${key}: HTTP ${response.status}`);
  }
  return response.text();
}

export function serverConfig(): Promise<{ kfp_host: string; root: string; has_token: boolean }> {
  return call(['config']);
}

/** A path under the server's root, as the contents API names it. */
export function relativeToRoot(root: string, absolute: string): string {
  const base = root.endsWith('/') ? root : root + '/';
  return absolute.startsWith(base) ? absolute.slice(base.length) : absolute;
}
