"""Evaluation of trained models: segment accuracy, F1, AUC, confusion matrices."""
