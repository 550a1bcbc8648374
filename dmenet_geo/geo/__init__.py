"""GeoTIFF <-> DMENet Zarr stores: writing, lazy reading, georeferencing conventions, footprints."""
