"""Pure maths of synthetic-data quality (numpy-testable; no files, no Keras), the layer below
`quality/` (images) and `feature_diffusion/` (feature vectors), which both judge memorisation:

    neighbours.py  nearest-neighbour distances, the memorisation threshold and flags
"""
