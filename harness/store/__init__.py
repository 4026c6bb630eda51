"""The results store."""

from .sqlite import DeviceState, RunRecord, Store, StoreError

__all__ = ["DeviceState", "RunRecord", "Store", "StoreError"]
