"""Developer tooling: code generation, the local mesh (`make up`) and the test runner (`make test`)."""
