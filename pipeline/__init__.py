"""The whole pipeline in one command: stage folders and settings (`stages`), the runner that
skips finished stages (`runner`), and report.html (`evidence`, `charts`, `report`)."""
