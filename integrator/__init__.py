"""The operator's side: the serial integration pass and the pre-deploy gate."""
