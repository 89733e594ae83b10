"""MC-JEPA training: configuration, losses wiring, schedule, checkpoints and the engine."""
