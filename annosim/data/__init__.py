"""Reading CT cases: file readers, orientation, dataset layouts."""

from annosim.data.case import Case

__all__ = ["Case"]
