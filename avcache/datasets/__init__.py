"""Datasets: the AVE annotation format, the clip-classification formats, the embedded demos, and
the dataset stage that turns any of them into ``features/dataset.h5`` (``avcache.contract.dataset``)."""
