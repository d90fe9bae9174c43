"""The federation: what is shared by every node (``protocol``), how messages move and are
recorded (``transport``), and, at the top, the coordinator, the dealers and the composition
roots that start and wire nodes (``cli``, ``simulate``, ``nodes``, ``processes``, ``report``,
``serve``, ``config``).

Layers inside this package, bottom to top (docs/design.md, "Layout"):
``federation.protocol`` imports only ``crypto``; ``federation.transport`` imports ``crypto``,
``federation.protocol`` and the generated ``federation.proto``; the top-level modules may
import everything below them, ``parties`` included. Nothing below imports the top level.
"""
