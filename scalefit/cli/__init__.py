"""The ``scalefit`` command line and the demo."""
