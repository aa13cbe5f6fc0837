"""scaleahead: predictive capacity platform."""
