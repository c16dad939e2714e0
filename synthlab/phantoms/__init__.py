"""Built-in data: phantoms generated from real anatomy where real anatomy exists offline."""
