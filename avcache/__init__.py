"""avcache: extract audio-visual features once into HDF5 caches, then train cheap models on them.

Where things are (each part depends only on the ones above it):

- ``contract/``:       what one stage writes and another reads: params.yaml validation, the
                       dataset file, the feature caches, the (audio, visual) pair, atomic writes.
                       Depends on nothing else in the project.
- ``kernels``, ``runtime``: portable CPU kernels; device, precision and determinism, shared by
                       extraction and training. ``lineage`` (the code each stage runs) and
                       ``share`` (a lab's DVC remote) are infrastructure.
- ``datasets/``:       AVE, the clip formats, the embedded demos and the dataset stage.
- ``media``:           decoding audio and video on one media clock.
- ``extraction/``:     the extractors (registry), reductions, work store, engines, the stage, plan.
- ``metrics``:         metrics and result tables that both tasks' evaluations write.
- ``localization/``:   AVE event localization: AV-att / DMRN models, training, evaluation, attention.
- ``classification/``: clip classification: heads on cached embeddings, the fold protocol, metrics.
- ``cli``:             ``avcache <command>`` (``python -m avcache``), what ``dvc.yaml`` runs.
"""
