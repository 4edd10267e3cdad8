"""A stop request that outlives a lost KeyboardInterrupt.

The CLI turns SIGTERM into KeyboardInterrupt, like Ctrl-C. Python drops an exception raised while a finalizer
(``__del__``) runs, so a signal landing then would be lost and the run would carry on to "ok". Every handler
therefore also sets ``STOP``, which the training loop checks at each step boundary.
"""

from __future__ import annotations

import threading

STOP = threading.Event()
"""Set by a stop signal; the training loop stops at the next step boundary and clears it."""
