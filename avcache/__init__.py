"""The contract between the pipeline's stages: what one stage writes and another reads.

- ``params``:  params.yaml, loaded and validated with errors that name the key
- ``dataset``: the dataset file (video order, labels, splits, class names)
- ``cache``:   the per-extractor HDF5 feature caches (writer, checked readers)
- ``pair``:    an (audio, visual) pair of caches as arrays, with the failure policy applied
- ``io``:      atomic writes (temporary file, fsync, rename)
- ``lineage``: the code each stage runs, as DVC dependencies

``extract``, ``train`` and ``evaluate`` import from here and never from each other's internals
(``evaluate`` uses ``train.models``, the models and their checkpoint format).
"""
