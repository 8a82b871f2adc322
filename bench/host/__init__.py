"""Host set-up: the engine, registry, emulators and base images a run needs, and checks."""
