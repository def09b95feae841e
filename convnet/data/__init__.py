"""Datasets: the prepared HDF5 format, its preparation, and the batches the trainer reads."""
