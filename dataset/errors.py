"""The one error of the dataset layer, in a module of its own so that every dataset module
(atomic writes, scans, image loading) can raise it without importing another.

Example:
    >>> raise DatasetError("in_dir photos has no label folders")
"""
from __future__ import annotations


class DatasetError(ValueError):
    """The input folder cannot be used as it is; the message says why in one line."""
