"""sketch search: find a photo in your phone's gallery by drawing it in the air.

The program's own package: `sketch_search.app` wires the stages together (both programs share
it), `sketch_search.common` is the ground floor every layer may use. The owner's stage folders
(`sketch`, `captioning`, `generation`, `retrieval`, `device`, `checkpoints`) stay at the top.
"""
__version__ = "0.4.0"
