"""The planner and its drivers: the live operator, the simulator, the demo and the CLI."""

__all__: list[str] = []
