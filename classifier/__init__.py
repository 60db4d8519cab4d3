"""Stage 4: train, evaluate and compare classifiers (real-only vs classic vs diffusion-augmented).

Layers: `metrics`, `calibration`, `sampling`, `grid` are pure numpy/scikit-learn;
`backbones` and `augment` build Keras pieces; `data`, `training`, `runs`, `report`,
`experiments` are the pipelines; `train`, `evaluate`, `grid_search`, `compare` are the CLIs
(`python3 -m classifier.train --help`). Importing this package imports no TensorFlow.
"""
