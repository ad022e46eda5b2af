"""One module per contended file kind: manifest, version, deploy."""
