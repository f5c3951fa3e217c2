"""What every service in the mesh is built from: settings, server host, errors, database, cache, channels, telemetry."""
