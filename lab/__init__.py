"""The lab: containerlab-style topologies of real device daemons in network namespaces.

``Lab.up(topology)`` brings a topology up (idempotent), ``Lab.attach(name)`` finds a running one,
``lab.down()`` removes everything it created. See ``docs/lab.md``.
"""

from lab.api import Lab, Node, NodeStatus
from lab.errors import FaultError, LabConflictError, LabError, NotRootError, ReadinessError, TopologyError

__all__ = ["FaultError", "Lab", "LabConflictError", "LabError", "Node", "NodeStatus", "NotRootError",
           "ReadinessError", "TopologyError"]
