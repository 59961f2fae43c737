"""Save/load function sources emitted into generated components (self-contained).

Every artifact goes through the same two helpers: `_kale_write_artifact` runs a marshaller's
save function into the artifact's file and records type, shape/dtypes, marshaller, size and a
checksum in the artifact's metadata; `_kale_read_artifact` reads the file and checks that
checksum before any load function parses it, so a truncated, swapped or tampered file is
refused before it can be deserialised. Save functions write to a file-like object that
hashes what passes through (one pass over the bytes, no copy in memory); load functions take
the verified bytes as a memoryview.

The checksum is xxh3-128 when xxhash is installed (it hashes at memory speed, so big arrays
stay within reach of a raw write) and sha256 from the standard library otherwise; the
metadata names the algorithm.
"""

ARTIFACT_IO_SOURCE = """def _kale_hasher(algorithm=None):
    # xxh3 when xxhash is installed (fast), else sha256 from the standard library.
    if algorithm in (None, "xxh3_128"):
        try:
            import xxhash
        except ImportError:
            if algorithm is not None:
                raise RuntimeError(
                    "kale-trace: this artifact's checksum is xxh3_128 but xxhash is not "
                    "installed in this step's image: pip install xxhash"
                ) from None
        else:
            return "xxh3_128", xxhash.xxh3_128()
    import hashlib

    return "sha256", hashlib.sha256()

def _kale_preallocate(file, offset, size):
    # As numpy's tofile does: reserving the blocks first makes a big write ~30% faster.
    # FALLOC_FL_KEEP_SIZE (1) never changes the file; where it is unsupported, nothing happens.
    try:
        import ctypes

        fallocate = ctypes.CDLL(None, use_errno=True).fallocate
        fallocate(file.fileno(), 1, ctypes.c_int64(offset), ctypes.c_int64(size))
    except (AttributeError, OSError, ValueError):
        pass

class _KaleHashingFile:
    # Hashes the bytes on their way to the file: one pass over them, no copy in memory.
    closed = False

    def __init__(self, file, hasher):
        self.file, self.hasher, self.size = file, hasher, 0

    def write(self, data):
        view = memoryview(data).cast("B")
        if view.nbytes >= 1 << 20:
            _kale_preallocate(self.file, self.size, view.nbytes)
        for start in range(0, view.nbytes, 1 << 22):  # hashed while still in the CPU's cache
            part = view[start : start + (1 << 22)]
            self.hasher.update(part)
            self.file.write(part)
        self.size += view.nbytes
        return view.nbytes

    def tell(self):
        return self.size

    def flush(self):
        self.file.flush()

    def writable(self):
        return True

def _kale_write_artifact(artifact, marshaller, value, save):
    # Save, and record what a consumer needs to check the bytes before loading them.
    algorithm, hasher = _kale_hasher()
    with open(artifact.path, "wb") as file:
        sink = _KaleHashingFile(file, hasher)
        save(value, sink)
        size = sink.size
    kind = type(value)
    metadata = {
        "type": f"{kind.__module__}.{kind.__qualname__}",
        "marshaller": marshaller,
        "size_bytes": size,
        "checksum": f"{algorithm}:{hasher.hexdigest()}",
    }
    shape = getattr(value, "shape", None)
    if isinstance(shape, tuple):
        metadata["shape"] = [int(n) for n in shape]
    dtypes = getattr(value, "dtypes", None)
    schema = getattr(value, "schema", None)
    if hasattr(dtypes, "items"):
        metadata["dtypes"] = {str(k): str(v) for k, v in list(dtypes.items())[:100]}
    elif hasattr(schema, "names") and hasattr(schema, "types"):
        pairs = list(zip(schema.names, schema.types))[:100]
        metadata["dtypes"] = {str(k): str(v) for k, v in pairs}
    elif getattr(value, "dtype", None) is not None:
        metadata["dtype"] = str(value.dtype)
    artifact.metadata.update(metadata)

def _kale_read_artifact(artifact, variable, producer):
    # The artifact's bytes, checked against the producer's checksum before anything parses them.
    import os

    expected = str(artifact.metadata.get("checksum", ""))
    algorithm = expected.partition(":")[0]
    if algorithm not in ("xxh3_128", "sha256"):
        raise RuntimeError(
            f"kale-trace: the artifact holding {variable!r} from step {producer!r} carries no "
            f"checksum in its metadata, so it is not loaded: re-run step {producer!r}"
        )
    hasher = _kale_hasher(algorithm)[1]
    with open(artifact.path, "rb", buffering=0) as file:
        size = os.fstat(file.fileno()).st_size
        try:  # numpy's buffer is not zero-filled first: a big read costs one pass, not two
            import numpy

            data = memoryview(numpy.empty(size, dtype=numpy.uint8))
        except ImportError:
            data = memoryview(bytearray(size))
        done = 0
        while done < size:  # hashed 1 MiB at a time, while it is still in the CPU's cache
            read = file.readinto(data[done : done + (1 << 20)])
            if not read:
                break
            hasher.update(data[done : done + read])
            done += read
    actual = f"{algorithm}:{hasher.hexdigest()}"
    if actual != expected:
        raise RuntimeError(
            f"kale-trace: checksum mismatch for {variable!r} from step {producer!r}: "
            f"expected {expected}, got {actual}. The file {artifact.path} changed after that "
            f"step wrote it, so it is not loaded: re-run step {producer!r}"
        )
    return data[:done]"""

JSON_SOURCE = """def _kale_save_json(value, file):
    import json

    file.write(json.dumps(value, allow_nan=False).encode("utf-8"))

def _kale_load_json(data):
    import json

    return json.loads(bytes(data).decode("utf-8"))"""

# The header and the array's own buffer are written as they are: no copy for contiguous
# arrays, and loading wraps the verified bytes instead of copying them again.
NPY_SOURCE = """def _kale_save_npy(value, file):
    import io

    import numpy
    from numpy.lib import format as npy_format

    if value.dtype.hasobject:
        raise ValueError("arrays of Python objects cannot be saved as .npy")
    array = value
    if not (array.flags.c_contiguous or array.flags.f_contiguous):
        array = numpy.ascontiguousarray(array)
    header = npy_format.header_data_from_array_1_0(array)
    try:
        stream = io.BytesIO()
        try:
            npy_format.write_array_header_1_0(stream, header)
        except ValueError:
            stream = io.BytesIO()
            npy_format.write_array_header_2_0(stream, header)
        ordered = array.T if header["fortran_order"] else array
        body = ordered.reshape(-1).view(numpy.uint8)
    except (ValueError, TypeError):  # exotic dtypes: numpy's own writer, one copy
        stream = io.BytesIO()
        numpy.save(stream, value, allow_pickle=False)
        file.write(stream.getbuffer())
        return
    file.write(stream.getbuffer())
    file.write(memoryview(body))

def _kale_load_npy(data):
    import io
    import math

    import numpy
    from numpy.lib import format as npy_format

    version = tuple(data[6:8])
    if data[:6] == b"\\x93NUMPY" and version in ((1, 0), (2, 0)):
        length_bytes = 2 if version == (1, 0) else 4
        offset = 8 + length_bytes + int.from_bytes(data[8 : 8 + length_bytes], "little")
        stream = io.BytesIO(bytes(data[:offset]))
        npy_format.read_magic(stream)
        read_header = (
            npy_format.read_array_header_1_0
            if version == (1, 0)
            else npy_format.read_array_header_2_0
        )
        shape, fortran_order, dtype = read_header(stream, max_header_size=len(data))
        if dtype.itemsize and not dtype.hasobject:
            count = math.prod(shape)
            flat = numpy.frombuffer(data, dtype=dtype, count=count, offset=offset)
            if fortran_order:
                return flat.reshape(shape[::-1]).T
            return flat.reshape(shape)
    return numpy.load(io.BytesIO(data), allow_pickle=False)"""

NPZ_SOURCE = """def _kale_save_npz(value, file):
    import io

    import scipy.sparse

    stream = io.BytesIO()  # numpy's zip writer seeks
    scipy.sparse.save_npz(stream, value, compressed=False)
    file.write(stream.getbuffer())

def _kale_load_npz(data):
    import io

    import scipy.sparse

    return scipy.sparse.load_npz(io.BytesIO(data))"""

# An uncompressed Arrow IPC stream keeps index, names and dtypes at pandas' pickle size and
# speed, and loads without copying; Parquet, or lz4/zstd compression, cost 2-4x the time for
# a smaller file (benchmarks/marshal.py). Columns whose dtype Arrow is known to hold exactly
# are written as they are; every other column is checked on the way: if it does not come
# back identical it travels pickled next to the Arrow data, and loading refuses those
# pickled parts unless the compiled marshaller allows them. The frame's structure (dtypes,
# labels, index) is checked after every conversion; should it still differ, the whole frame
# travels pickled.
ARROW_SOURCE = """def _kale_arrow_exact(dtype):
    # Dtypes Arrow stores and restores exactly; anything else is checked column by column.
    import numpy
    import pandas

    if isinstance(dtype, pandas.CategoricalDtype):
        return _kale_arrow_exact(dtype.categories.dtype)
    if isinstance(dtype, pandas.StringDtype):
        return dtype.storage == "pyarrow"  # Arrow brings "python" strings back as "pyarrow"
    if isinstance(dtype, (pandas.DatetimeTZDtype, pandas.ArrowDtype)):
        return True
    if isinstance(dtype, pandas.api.extensions.ExtensionDtype):
        return dtype.name in (
            "Int8", "Int16", "Int32", "Int64", "UInt8", "UInt16", "UInt32", "UInt64",
            "Float32", "Float64", "boolean",
        )
    if not isinstance(dtype, numpy.dtype) or not dtype.isnative:
        return False
    return dtype.kind in "biumM" or (dtype.kind == "f" and dtype.itemsize >= 4)

def _kale_arrow_table(frame, meta):
    # RangeIndex, column labels and index frequency travel in our header: Arrow loses them.
    import warnings

    import pandas
    import pyarrow

    index = frame.index
    if type(index) is pandas.RangeIndex and (index.name is None or type(index.name) is str):
        meta["range"] = [index.start, index.stop, index.step, index.name]
        frame = frame.reset_index(drop=True)
    if getattr(index, "freq", None) is not None:
        meta["freq"] = index.freqstr
    labels = frame.columns
    plain_name = labels.name is None or type(labels.name) is str
    if type(labels) is pandas.RangeIndex and plain_name:
        meta["column_range"] = [labels.start, labels.stop, labels.step, labels.name]
    elif type(labels) is pandas.Index and plain_name and labels.is_unique:
        if all(type(label) in (str, int) for label in labels):
            meta["labels"] = [list(labels), str(labels.dtype), labels.name]
    with warnings.catch_warnings():  # labels Arrow would stringify: the check catches them
        warnings.simplefilter("ignore", UserWarning)
        if len(frame):
            return pyarrow.Table.from_pandas(frame, preserve_index="range" not in meta)
        # One empty batch still carries the categories of categorical columns.
        batch = pyarrow.RecordBatch.from_pandas(frame, preserve_index="range" not in meta)
    return pyarrow.Table.from_batches([batch])

def _kale_arrow_frame(table, meta):
    import pandas
    import pyarrow

    frame = table.to_pandas()
    if "range" in meta:
        start, stop, step, name = meta["range"]
        index = pandas.RangeIndex(start, stop, step, name=name)
        if frame.shape[1]:
            frame.index = index
        else:
            frame = pandas.DataFrame(index=index, columns=frame.columns)
    if "column_range" in meta:
        start, stop, step, name = meta["column_range"]
        frame.columns = pandas.RangeIndex(start, stop, step, name=name)
    if "labels" in meta:
        labels, dtype, name = meta["labels"]
        frame.columns = pandas.Index(labels, dtype=dtype, name=name)
    if "freq" in meta:
        frame.index = type(frame.index)(frame.index, freq=meta["freq"])
    if table.num_rows == 0:  # Arrow drops the categories of empty categoricals
        for position in range(frame.shape[1]):
            kind = table.schema.types[position]
            chunks = table.column(position).chunks
            if pyarrow.types.is_dictionary(kind) and chunks:
                categories = chunks[0].dictionary.to_pandas()
                empty = pandas.Categorical([], categories=categories, ordered=kind.ordered)
                frame.isetitem(position, empty)
    return frame

def _kale_arrow_check(back, frame, exact):
    # Exact dtypes keep their values: check the structure; anything else in full.
    import pandas

    if exact:
        same = (
            list(back.dtypes) == list(frame.dtypes)
            and back.columns.equals(frame.columns)
            and list(back.columns.names) == list(frame.columns.names)
            and back.index.equals(frame.index)
            and list(back.index.names) == list(frame.index.names)
        )
    else:
        pandas.testing.assert_frame_equal(back, frame, check_exact=True)
        same = True
    same = same and type(back.index) is type(frame.index)
    same = same and getattr(back.index, "freq", None) == getattr(frame.index, "freq", None)
    if not same:
        raise ValueError("the frame does not come back from Arrow unchanged")

def _kale_save_arrow(value, file):
    import json
    import struct

    import numpy
    import pandas
    import pyarrow

    meta = {"kind": "table", "pickled": None}
    pickled = None
    if isinstance(value, pyarrow.Table):
        table = value
    else:
        is_series = isinstance(value, pandas.Series)
        frame = value.to_frame() if is_series else value
        meta["kind"] = "series" if is_series else "frame"
        meta["series_name_is_none"] = is_series and value.name is None
        index = frame.index
        index_dtypes = index.dtypes if isinstance(index, pandas.MultiIndex) else [index.dtype]
        index_plain = all(_kale_arrow_exact(dtype) for dtype in index_dtypes)
        suspects = [i for i, d in enumerate(frame.dtypes) if not _kale_arrow_exact(d)]
        columns = {}
        if suspects and frame.columns.is_unique:
            frame = frame.copy(deep=False)
            for position in list(suspects):  # non-native byte order: swapped, and back on load
                dtype = frame.dtypes.iloc[position]
                if isinstance(dtype, numpy.dtype) and dtype.kind in "biufcmM":
                    native = dtype.newbyteorder("=")
                    if not dtype.isnative and _kale_arrow_exact(native):
                        meta.setdefault("byteorder", {})[position] = dtype.str
                        frame.isetitem(position, frame.iloc[:, position].to_numpy().astype(native))
                        suspects.remove(position)
            for position in suspects:
                column = frame.iloc[:, position]
                try:
                    alone = pandas.DataFrame({"c": column.array})
                    back = pyarrow.Table.from_pandas(alone, preserve_index=False).to_pandas()
                    pandas.testing.assert_series_equal(back["c"], alone["c"], check_exact=True)
                except Exception:
                    values = column.array
                    if isinstance(column.dtype, numpy.dtype):
                        values = column.to_numpy(copy=False)
                    columns[position] = values
                    frame.isetitem(position, numpy.zeros(len(frame), dtype=numpy.int8))
        try:
            if index_plain:  # values of exact dtypes survive: check the structure on 2 rows
                sample, sample_meta = frame.iloc[:2], {}
                back = _kale_arrow_frame(_kale_arrow_table(sample, sample_meta), sample_meta)
                _kale_arrow_check(back, sample, exact=True)
                table = _kale_arrow_table(frame, meta)
            else:
                table = _kale_arrow_table(frame, meta)
                _kale_arrow_check(_kale_arrow_frame(table, meta), frame, exact=False)
            if columns:
                pickled = {"columns": columns}
        except Exception:  # index or labels Arrow cannot hold: the whole frame, pickled
            table = pyarrow.table({})
            pickled = {"frame": value}
    if pickled is not None:
        import cloudpickle

        meta["pickled"] = sorted(pickled)
        pickled = cloudpickle.dumps(pickled, protocol=5)
    head = json.dumps(meta).encode("utf-8")
    pickled = pickled or b""
    file.write(b"KALEARW1" + struct.pack("<QQ", len(head), len(pickled)) + head)
    file.write(pickled)
    with pyarrow.ipc.new_stream(file, table.schema) as writer:
        batches = table.to_batches()
        if not batches:  # one empty batch still carries the categories of categoricals
            arrays = [c.chunks[0] if c.num_chunks else pyarrow.array([], c.type) for c in table]
            batches = [pyarrow.RecordBatch.from_arrays(arrays, schema=table.schema)]
        for batch in batches:
            writer.write_batch(batch)


def _kale_load_arrow(data, allow_pickle=False):
    import json
    import struct

    import pyarrow

    if bytes(data[:8]) != b"KALEARW1":
        raise ValueError("not a kale-trace Arrow artifact")
    head_size, pickled_size = struct.unpack("<QQ", data[8:24])
    meta = json.loads(bytes(data[24 : 24 + head_size]))
    start = 24 + head_size
    table = pyarrow.ipc.open_stream(pyarrow.py_buffer(data[start + pickled_size :])).read_all()
    if meta["kind"] == "table":
        return table
    pickled = {}
    if meta["pickled"]:
        if not allow_pickle:
            raise ValueError(
                "kale-trace: this frame artifact holds pickled parts but was compiled as "
                "Arrow-only, so it is not unpickled: recompile the notebook"
            )
        import pickle

        pickled = pickle.loads(data[start : start + pickled_size])
    if "frame" in pickled:
        return pickled["frame"]
    frame = _kale_arrow_frame(table, meta)
    for position, code in meta.get("byteorder", {}).items():
        frame.isetitem(int(position), frame.iloc[:, int(position)].to_numpy().astype(code))
    for position, values in pickled.get("columns", {}).items():
        frame.isetitem(position, values)
    if meta["kind"] == "series":
        series = frame.iloc[:, 0]
        return series.rename(None) if meta["series_name_is_none"] else series
    return frame"""

JOBLIB_SOURCE = """def _kale_save_joblib(value, file):
    import joblib

    joblib.dump(value, file)

def _kale_load_joblib(data):
    import io

    import joblib

    return joblib.load(io.BytesIO(data))"""

XGBOOST_SOURCE = """def _kale_save_xgboost(value, file):
    file.write(value.save_raw(raw_format="ubj"))

def _kale_load_xgboost(data):
    import xgboost

    booster = xgboost.Booster()
    booster.load_model(bytearray(data))
    return booster"""

LIGHTGBM_SOURCE = """def _kale_save_lightgbm(value, file):
    file.write(value.model_to_string().encode("utf-8"))

def _kale_load_lightgbm(data):
    import lightgbm

    return lightgbm.Booster(model_str=bytes(data).decode("utf-8"))"""

# Tensors load with weights_only=True (no arbitrary unpickling); modules need their class,
# which cloudpickle carries by value when the notebook defined it.
TORCH_TENSOR_SOURCE = """def _kale_save_torch_tensor(value, file):
    import io

    import torch

    stream = io.BytesIO()  # torch's zip writer seeks
    torch.save(value, stream)
    file.write(stream.getbuffer())

def _kale_load_torch_tensor(data):
    import io

    import torch

    return torch.load(io.BytesIO(data), weights_only=True)"""

TORCH_MODULE_SOURCE = """def _kale_save_torch_module(value, file):
    import io

    import cloudpickle
    import torch

    stream = io.BytesIO()  # torch's zip writer seeks
    torch.save(value, stream, pickle_module=cloudpickle)
    file.write(stream.getbuffer())

def _kale_load_torch_module(data):
    import io

    import torch

    return torch.load(io.BytesIO(data), weights_only=False)"""

CLOUDPICKLE_SOURCE = """def _kale_save_cloudpickle(value, file):
    import cloudpickle

    cloudpickle.dump(value, file, protocol=5)

def _kale_load_cloudpickle(data):
    import pickle

    return pickle.loads(data)"""

# A file the notebook wrote in its folder and a later step reads: copied byte for byte.
FILE_SOURCE = """def _kale_keep_file(relative_path, artifact_path):
    # A file the notebook wrote in its folder and a later step reads: it travels as an artifact.
    import shutil

    shutil.copyfile(relative_path, artifact_path)

def _kale_restore_file(artifact_path, relative_path):
    import os
    import shutil

    folder = os.path.dirname(relative_path)
    if folder:
        os.makedirs(folder, exist_ok=True)
    shutil.copyfile(artifact_path, relative_path)"""

# A global random generator's state, as the producing step leaves it (hidden_state.py).
RNG_STATE_SOURCE = """def _kale_save_rng_state(generator, file):
    # The state this step leaves a global generator in: the next step that draws from it
    # continues the notebook's stream of numbers.
    import pickle

    if generator == "random":
        import random

        state = random.getstate()
    elif generator == "numpy.random":
        import numpy

        state = numpy.random.get_state()
    else:
        import torch

        state = bytes(torch.random.get_rng_state().numpy())
    pickle.dump((generator, state), file, protocol=4)

def _kale_load_rng_state(data):
    # Set the generator to that state: this step draws the numbers the notebook drew.
    import pickle

    generator, state = pickle.loads(data)
    if generator == "random":
        import random

        random.setstate(state)
    elif generator == "numpy.random":
        import numpy

        numpy.random.set_state(state)
    else:
        import torch

        torch.random.set_rng_state(torch.frombuffer(bytearray(state), dtype=torch.uint8))"""
