"""The six stages, one module each, and the stage table (`mygo.stages.table`) that declares them."""
