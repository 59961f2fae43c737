"""Save/load function sources emitted into generated components (self-contained)."""

JSON_SOURCE = """def _kale_save_json(value, path):
    import json

    with open(path, "w", encoding="utf-8") as file:
        json.dump(value, file)

def _kale_load_json(path):
    import json

    with open(path, encoding="utf-8") as file:
        return json.load(file)"""

NPY_SOURCE = """def _kale_save_npy(value, path):
    import numpy

    with open(path, "wb") as file:
        numpy.save(file, value, allow_pickle=False)

def _kale_load_npy(path):
    import numpy

    with open(path, "rb") as file:
        return numpy.load(file, allow_pickle=False)"""

# Parquet keeps index, names and dtypes; frames Arrow cannot hold exactly fall back to
# cloudpickle, marked by a magic header so loading knows which it is.
PARQUET_SOURCE = """def _kale_save_parquet(value, path):
    import io

    import cloudpickle
    import pandas

    buffer = io.BytesIO()
    try:
        frame = value.to_frame() if isinstance(value, pandas.Series) else value
        frame.to_parquet(buffer)
        buffer.seek(0)
        back = pandas.read_parquet(buffer)
        if isinstance(value, pandas.Series):
            back = back.iloc[:, 0].rename(value.name)
            pandas.testing.assert_series_equal(back, value, check_exact=True)
        else:
            pandas.testing.assert_frame_equal(back, value, check_exact=True)
        data, kind = buffer.getvalue(), b"PQ-FRAME" if frame is value else b"PQ-SERIE"
    except Exception:
        data, kind = cloudpickle.dumps(value), b"PICKLED!"
    with open(path, "wb") as file:
        file.write(kind)
        file.write(data)

def _kale_load_parquet(path):
    import io

    import cloudpickle
    import pandas

    with open(path, "rb") as file:
        kind, data = file.read(8), file.read()
    if kind == b"PICKLED!":
        return cloudpickle.loads(data)
    frame = pandas.read_parquet(io.BytesIO(data))
    if kind == b"PQ-SERIE":
        return frame.iloc[:, 0].rename(frame.columns[0])
    return frame"""

JOBLIB_SOURCE = """def _kale_save_joblib(value, path):
    import joblib

    joblib.dump(value, path)

def _kale_load_joblib(path):
    import joblib

    return joblib.load(path)"""

CLOUDPICKLE_SOURCE = """def _kale_save_cloudpickle(value, path):
    import cloudpickle

    with open(path, "wb") as file:
        cloudpickle.dump(value, file)

def _kale_load_cloudpickle(path):
    import cloudpickle

    with open(path, "rb") as file:
        return cloudpickle.load(file)"""
