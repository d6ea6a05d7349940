"""The contract between the pipeline's stages: what one stage writes and another reads.

- ``params``:  params.yaml, loaded and validated with errors that name the key
- ``dataset``: the dataset file (video order, labels, splits or folds, class names)
- ``cache``:   the per-extractor HDF5 feature caches (writer, checked readers)
- ``pair``:    an (audio, visual) pair of caches as arrays, with the failure policy applied
- ``io``:      atomic writes (temporary file, fsync, rename) and file digests

It imports nothing from the rest of the project; every other part builds on it.
"""
