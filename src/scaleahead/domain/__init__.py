"""Pure domain logic (no I/O): the scaling policy lives in :mod:`scaleahead.domain.scaling`."""
