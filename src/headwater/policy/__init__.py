"""Governed access: the policy document and the engine that enforces it.

Placeholder docstring; see the end of the module.
"""

from headwater.policy._engine import Decision, PolicyEngine
from headwater.policy._masks import PORTABLE
from headwater.policy._model import ACTIONS, MASKS, Policy, load_policy

__all__ = ["ACTIONS", "MASKS", "PORTABLE", "Decision", "Policy", "PolicyEngine", "load_policy"]
