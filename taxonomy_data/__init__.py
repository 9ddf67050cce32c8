"""The bundled universal entity taxonomy (data only; read through ``b2ner_cli.taxonomy``)."""
