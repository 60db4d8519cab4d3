"""Stage 4: train, evaluate and compare classifiers (real-only, rebalanced, classic
augmentation, classic fill, diffusion fill) at one budget, with the statistics to tell them
apart.

Layers: `metrics`, `statistics`, `arms`, `calibration`, `sampling`, `grid` are pure
numpy/scipy/scikit-learn; `backbones` and `augment` build Keras pieces; `data`, `training`,
`runs`, `report`, `experiments`, `comparison` are the pipelines; `train`, `evaluate`,
`grid_search`, `compare` are the CLIs (`python3 -m classifier.train --help`). Importing this
package imports no TensorFlow.
"""
