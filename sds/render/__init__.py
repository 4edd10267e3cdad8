"""Volume rendering of a NeRF field: samplers, compositing, shading."""
