"""sessionlab's benchmarks: speed, accuracy and cost, measured on real labs (root, Open
vSwitch), never in the test command. `python -m bench` runs them (see `bench/__main__.py`)."""
