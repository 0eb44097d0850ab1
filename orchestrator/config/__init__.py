"""orch.yml and the files orch ships: typed settings (settings.py, every default once),
the loader with file:line errors (load.py), the YAML reader and round-trip editor
(yamlfile.py), and where playbooks/ and prompts/ are found (resources.py).
"""
