"""The scale benchmark's parts (``pipelines/benchmark.py`` is the CLI).

* :mod:`pipelines.bench.mosaic`: the real-imagery GeoTIFF mosaic the benchmark compresses.
* :mod:`pipelines.bench.measure`: one measurement (compress, decode, window read) per fresh process.
"""
