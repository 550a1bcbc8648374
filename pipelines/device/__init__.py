"""A GPU training run on the device machine, prepared here (``prepare.py``), run there
(``train.sh``), and its returned weights put back together here (``assemble.py``)."""
