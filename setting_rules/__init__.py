"""Pure rules that settings obey, below config.py (no project imports, no Keras), so that
config.py and dataset/ can check values without importing the stage packages or cli/:

    arm_names.py       the names of classifier.compare's arms and their grammar
    mask_regions.py    the named image regions a mask may lie in, and their area
    saved_settings.py  a config as JSON-able data; which settings differ from a saved one
"""
