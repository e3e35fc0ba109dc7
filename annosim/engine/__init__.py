"""The run path: one unit (:mod:`.unit`), one case (:mod:`.case`), a whole run (:mod:`.driver`),
and precomputed segmentations scored on the same schema (:mod:`.score`)."""
