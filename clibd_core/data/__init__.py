"""Data: records, readers, splits, datasets and the image transforms every preset uses."""
