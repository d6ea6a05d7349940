"""avcache: extract audio-visual features once into HDF5 caches, then train cheap models on them.

Where things are (each part depends only on the ones above it):

- ``contract/``:       what one stage writes and another reads: params.yaml validation, the
                       dataset file, the feature caches, the (audio, visual) pair, atomic writes.
                       Depends on nothing else in the project.
- ``kernels``, ``runtime``: portable CPU kernels; device, precision and determinism, shared by
                       extraction and training. ``lineage`` (the code each stage runs),
                       ``tasks`` (the task a dataset file's kind runs), ``share`` (a lab's DVC
                       remote), ``workdir`` (work folders, the lock per output) and ``process``
                       (stages that die with DVC, the params.yaml guard) are infrastructure.
- ``datasets/``:       the AVE format (``ave``), the clip formats (``clips``), the embedded demos and
                       the dataset stage.
- ``media``:           decoding audio and video on one media clock.
- ``extraction/``:     the extractors (registry), reductions, work store, engines, the stage, plan.
- ``localization/``:   the AVE task, event localization: AV-att / DMRN models, training, evaluation,
                       attention.
- ``classification/``: the clip task, clip classification: heads on cached embeddings, CNNs on
                       cached spectrograms (``cnns``), the fold protocol, training, evaluation
                       (metrics), attention (none: a README says why).
- ``cli``:             ``avcache <command>`` (``python -m avcache``), what ``dvc.yaml`` runs; ``train``,
                       ``evaluate`` and ``attention`` run the task of the dataset file's kind.
- ``metrics``:         metrics and result tables that both tasks' evaluations write.
"""
