"""The live operator (``tidal run``): the Kubernetes and Prometheus edges around the planner."""

from controller.operator.command import Operator, add_arguments, run
from controller.operator.settings import OperatorSettings

__all__ = ["Operator", "OperatorSettings", "add_arguments", "run"]
