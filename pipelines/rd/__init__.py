"""Rate-distortion evaluation, one concept per module (``pipelines/evaluate.py`` is the CLI).

* :mod:`pipelines.rd.tiles`: image listing, tile cutting, per-tile metrics.
* :mod:`pipelines.rd.results`: the result data model (points, curves, BD rows, the whole run) and
  its JSON form.
* :mod:`pipelines.rd.classical`: imagecodecs encoders / decoders and their sweeps.
* :mod:`pipelines.rd.learned`: DMENet and CompressAI (mbt2018-mean) curves.
* :mod:`pipelines.rd.sweep`: a learned codec's quality sweep, batch by batch (threads optional).
* :mod:`pipelines.rd.bd`: Bjontegaard delta rate and quality.
* :mod:`pipelines.rd.report`: BD table, text table, plot, JSON file input and output.
* :mod:`pipelines.rd.run`: the whole evaluation (:func:`pipelines.rd.run.evaluate`).
"""
