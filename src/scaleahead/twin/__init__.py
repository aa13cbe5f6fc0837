"""Capacity digital twin: replay demand traces against reactive, predictive and reference
scaling policies (see ``runner.simulate_frame`` and ``scaleahead simulate``)."""
