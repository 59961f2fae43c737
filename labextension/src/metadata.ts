/**
 * The notebook's `kubeflow_notebook` metadata as Kale's left panel writes it.
 *
 * Kale writes `experiment: {id, name}` beside `experiment_name`, `docker_image` for the base
 * image and `volumes` as a list; kale-trace reads those keys (and `base_image`). Keys this
 * panel does not edit are kept as they were, so Kale's own (Katib, Rok, steps_defaults)
 * survive a save here.
 */

export interface IVolume {
  type: 'pvc' | 'new_pvc' | string;
  name: string;
  mount_point: string;
  size?: number;
  size_type?: string;
  [key: string]: unknown;
}

export interface IPipelineMeta {
  pipeline_name: string;
  experiment_name: string;
  pipeline_description: string;
  docker_image: string;
  enable_caching: boolean;
  volumes: IVolume[];
}

type Raw = { [key: string]: unknown };

function text(raw: Raw, key: string): string {
  const value = raw[key];
  return typeof value === 'string' ? value : '';
}

/** What the panel shows; `enabled` is whether the notebook has the metadata at all. */
export function readMeta(raw: unknown): { enabled: boolean; meta: IPipelineMeta } {
  const enabled = raw !== null && typeof raw === 'object' && !Array.isArray(raw);
  const data: Raw = enabled ? (raw as Raw) : {};
  const experiment = data['experiment'];
  const oldName =
    experiment && typeof experiment === 'object' ? text(experiment as Raw, 'name') : '';
  return {
    enabled,
    meta: {
      pipeline_name: text(data, 'pipeline_name'),
      experiment_name: text(data, 'experiment_name') || oldName,
      pipeline_description: text(data, 'pipeline_description'),
      docker_image: text(data, 'docker_image') || text(data, 'base_image'),
      enable_caching: data['enable_caching'] !== false,
      volumes: Array.isArray(data['volumes']) ? (data['volumes'] as IVolume[]) : []
    }
  };
}

/** The metadata to save: Kale's keys for what the panel edits, every other key kept. */
export function writeMeta(previous: unknown, meta: IPipelineMeta): Raw {
  const old: Raw =
    previous && typeof previous === 'object' && !Array.isArray(previous) ? { ...(previous as Raw) } : {};
  const oldExperiment = old['experiment'];
  const id =
    oldExperiment && typeof oldExperiment === 'object' ? text(oldExperiment as Raw, 'id') : '';
  const written: Raw = {
    ...old,
    pipeline_name: meta.pipeline_name,
    pipeline_description: meta.pipeline_description,
    experiment: { id: meta.experiment_name === text(old, 'experiment_name') ? id : '', name: meta.experiment_name },
    experiment_name: meta.experiment_name,
    docker_image: meta.docker_image,
    volumes: meta.volumes
  };
  delete written['base_image']; // one image key: Kale's
  if (meta.enable_caching) {
    delete written['enable_caching'];
  } else {
    written['enable_caching'] = false;
  }
  return written;
}

/** Why a volume cannot be mounted as given, or null (kale-trace checks it again). */
export function checkVolume(volume: IVolume): string | null {
  if (volume.type !== 'pvc' && volume.type !== 'new_pvc') {
    return `volume type '${volume.type}': use pvc (an existing claim) or new_pvc`;
  }
  if (!/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(volume.name || '')) {
    return 'claim name: lowercase letters, digits and -, e.g. data-volume';
  }
  const mount = volume.mount_point || '';
  if (!mount.startsWith('/') || mount.includes('..') || mount === '/') {
    return `mount path '${mount}': an absolute path such as /data, not / and without ..`;
  }
  if (volume.type === 'new_pvc' && !(Number(volume.size) > 0)) {
    return 'a new claim needs a size, e.g. 1 (Gi)';
  }
  return null;
}

/** A pipeline name KFP and Kale accept, or why not. */
export function checkPipelineName(name: string): string | null {
  if (name === '') {
    return null; // the notebook's file name is used
  }
  if (name.length > 100) {
    return 'at most 100 characters';
  }
  return /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(name)
    ? null
    : 'lowercase letters, digits and -, starting and ending with a letter or digit';
}
