"""Stage 2: lightweight audio-visual models trained on the cached features."""
