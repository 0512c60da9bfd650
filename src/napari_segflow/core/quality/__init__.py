"""Stages 3 and 4 of the workflow: how good are the labels?

``metrics`` (confusion matrices, per-class and boundary IoU), ``calibration`` (annotators
against gold, flags, the AI pre-label gate), ``qa`` (stratified sampling and batch reports),
``batch_metrics`` (the same over folders of files, serial or on Dask), ``polygons`` (would
polygons reproduce the masks?), and the renderers ``report_html`` and ``polygon_html``, which
only draw data handed to them.
"""
