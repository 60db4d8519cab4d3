"""Model folders: the one description of what a trained model's folder holds and how it loads.

Three kinds of folder (four kinds of model), each written by its own stage and read by
every later one:

    diffusion    stage 2 (run_diffusion.py, train_all.py): a DDIM DiffusionModel or, with
                 --model gan, a ConditionalGan; best and last weights
    classifier   stage 4 (python3 -m classifier.train, grid_search, compare); best weights
    feature      the feature_fill arm's feature-space denoiser; one weights file

Every folder holds config.json (the settings that made it, `_config_class` naming them),
model.json (the network's own description: class + constructor arguments) and its weights.

Modules (layer: above the models, below the pipelines that train and use them):
    files.py        the file names and the kinds; the only place a weights file is named
    description.py  model.json: writing it, reading it back, the rules for older folders
    build.py        a model from model.json or, in older folders, from the settings
    folder.py       ModelFolder: open (kind checked), build, load, save, resume questions

Example:
    >>> folder = ModelFolder.open("models/L2_20250101-120000_ab12", "diffusion")
    >>> model = folder.load("best")
"""
