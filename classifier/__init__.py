"""Stage 4: train, evaluate and compare classifiers (real-only vs classic vs diffusion-augmented).

Planned; see the README status table.
"""
