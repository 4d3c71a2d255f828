"""YAML documents that name their own mistakes: marked parsing (`yamlmarks`), JSON-schema
problems in the user's words (`problems`), close-match suggestions (`closematch`) and
reading a YAML file safely (`files`). Recipes, device profiles and remote settings share it.
"""
