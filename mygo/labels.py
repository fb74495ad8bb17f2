"""The label value that means "no loss here" (PyTorch's cross-entropy default), shared by the chat encoding
(`mygo.data.chat`), the scoring core (`mygo.models.scoring`) and the overlap signal: the model may not import
the data code, so the constant lives below both."""

IGNORE_INDEX = -100
