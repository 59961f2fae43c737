/** What the panel and the cell rows share: settings, and the last compile per notebook. */
import { ISignal, Signal } from '@lumino/signaling';
import { IDataflow } from './dataflow';

export interface ISettings {
  baseImage: string;
  outputFolder: string;
  enableByDefault: boolean;
  saveBeforeCompile: boolean;
}

export const DEFAULT_SETTINGS: ISettings = {
  baseImage: '',
  outputFolder: '.kale',
  enableByDefault: false,
  saveBeforeCompile: true
};

export class Store {
  settings: ISettings = { ...DEFAULT_SETTINGS };
  private flows = new Map<string, IDataflow>();
  private previous = new Map<string, IDataflow>();
  private changed_ = new Signal<Store, string>(this);

  /** Fires with a notebook path when its dataflow or its enabled state changed. */
  get changed(): ISignal<Store, string> {
    return this.changed_;
  }

  dataflow(path: string): IDataflow | undefined {
    return this.flows.get(path);
  }

  previousDataflow(path: string): IDataflow | undefined {
    return this.previous.get(path);
  }

  setDataflow(path: string, flow: IDataflow): void {
    const old = this.flows.get(path);
    if (old) {
      this.previous.set(path, old);
    }
    this.flows.set(path, flow);
    this.changed_.emit(path);
  }

  touch(path: string): void {
    this.changed_.emit(path);
  }
}
