"""Studies: parameter sweeps and ablations run on the simulator (Python API, figures, tables)."""
