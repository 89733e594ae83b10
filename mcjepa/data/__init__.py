"""Data: embedded synthetic frame pairs and images, and the pipelines for real flow and image datasets."""
