"""What a run is: its spec, the recognizer it drives, reading windows, progress, the manifest and the writing.

Every recognizer (the B2NER LLM today; taggers and the cascade through the same seam) runs through here, and so
do ``extract``, ``eval -m``, ``bench``, the trainer's dev scoring and the Python API.
"""
