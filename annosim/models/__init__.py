"""Model families behind the plugin API of :mod:`annosim.models.base`."""

from annosim.models.base import SliceModel, SliceModelBase

__all__ = ["SliceModel", "SliceModelBase"]
