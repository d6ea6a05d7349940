"""Stage 1: decode videos once, run pretrained extractors, cache per-second features in HDF5."""
