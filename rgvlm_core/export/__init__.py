"""Exports of a workspace's offline dataset for other tools: Minari (`to_minari`) and Parquet (`to_parquet`).

Both write the dataset the trainer sees (`collect`, built by rl.dataset.build_dataset): an exported
dataset is exactly what `rgvlm train` would train IQL on for the same reward source and episodes, with
the reward source and the label run behind it recorded beside the data (docs/export.md).
"""

from __future__ import annotations

from rgvlm_core.export.collect import EXPORT_FORMAT_VERSION, ExportConfig, ExportData, collect

__all__ = ["EXPORT_FORMAT_VERSION", "ExportConfig", "ExportData", "collect"]
